"""Every reasoning measure of stored answers: overlap with the teacher's references, grounding, verdicts,
loops, repetitions, completion, claim accuracy, conclusion and argument agreement.

``answer_report`` scores a table of answers (one per reference row); ``stored_report`` rescores a system's
stored answers (``answers_path``) without generating anything, and ``references_report`` scores the teacher's
own references, the ceiling, on the same measures (their overlap with themselves is no measure, so it is left
out). A system's answers are stored twice when both are generated: decoded with the configured rules (no
repeated n-gram, a minimum length) and without them, to measure whether the trained model still needs them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from thinkrec import registry
from thinkrec.claims import Claim, ClaimChecker
from thinkrec.config import Config, ConfigError
from thinkrec.data.prepared import PreparedData
from thinkrec.files import read_json, write_json
from thinkrec.text_intervals import answer_tallies
from thinkrec.text_metrics import explanation_report, grounding_rate, text_measures, title_words

REFERENCES = "references"  # the teacher's references, scored as if they were a system's answers
GENERATION_KEYS = ("seconds", "decode_dtype", "arithmetic", "decoding_rules",
                   "citation_guard")  # facts of the run, not measures


def answers_path(config: Config, name: str, rules: bool = True) -> Path:
    """A system's stored answers on the reference rows: decoded with the configured rules, or without them."""
    return registry.folder(config, name) / ("reasoning.parquet" if rules else "reasoning_free.parquet")


def answers_metrics_path(config: Config, name: str, rules: bool = True) -> Path:
    """The measures of ``answers_path`` (and how long generating them took)."""
    path = answers_path(config, name, rules)
    return path.with_name(f"{path.stem}_metrics.json")


def decodes_with_rules(config: Config, name: str) -> bool:
    """Whether ``name`` decodes with the minimum-length and no-repeat rules: as ``llm.decoding_rules`` says,
    and under "auto" unless its reference answers stored without the rules loop no more often and end a
    sentence as often and repeat an argument no more often (where both measured it) than those stored with them
    (a model that no longer needs the rules is only hurt by them: the no-repeat rule garbles a title the answer
    names twice)."""
    setting = config.llm.decoding_rules
    if setting not in ("auto", "on", "off"):
        raise ConfigError(f"llm.decoding_rules: expected auto, on or off, got {setting!r}")
    if setting != "auto":
        return setting == "on"
    ruled, free = (answers_metrics_path(config, name, rules) for rules in (True, False))
    if not (ruled.exists() and free.exists()):
        return True
    ruled, free = read_json(ruled), read_json(free)
    faults = [key for key in ("loop_rate", "repetition_rate", "garble_rate") if key in ruled and key in free]
    return not (all(free[key] <= ruled[key] for key in faults) and free["completion_rate"] >= ruled["completion_rate"])


def with_history(prepared: PreparedData, answers: pd.DataFrame) -> pd.DataFrame:
    """``answers`` (test rows by user and item) joined with the history each row's prompt shows."""
    test = prepared.rows[prepared.rows["split"] == "test"][["user", "item", "hist_items", "hist_labels"]]
    joined = answers.merge(test, on=["user", "item"], how="left", validate="one_to_one")
    if joined["hist_items"].isna().any():
        raise ValueError("some answered rows are not test rows of the prepared data")
    return joined


def shown_titles(prepared: PreparedData, frame: pd.DataFrame) -> list[set[str]]:
    """The titles each row's prompt shows (its history and its target; rows with item, hist_items): what its
    answer may cite."""
    titles = prepared.items["title"].tolist()
    return [{titles[i] for i in hist if i >= 0} | {titles[item]}
            for hist, item in zip(frame["hist_items"], frame["item"], strict=True)]


def check_claims(prepared: PreparedData, config: Config, answers: pd.DataFrame, column: str) -> list[list[Claim]]:
    """The claims of each text in ``answers[column]`` (rows with user, item, hist_items, hist_labels)."""
    checker = ClaimChecker(prepared, config)
    return [checker.check(text, user, item, hist, labels) for text, user, item, hist, labels in
            zip(answers[column], answers["user"], answers["item"], answers["hist_items"], answers["hist_labels"])]


def tallies_of(prepared: PreparedData, config: Config, answers: pd.DataFrame, column: str = "generated"
               ) -> dict[str, np.ndarray]:
    """The per-answer counts behind the compared measures (``text_intervals.answer_tallies``) of the texts in
    ``answers[column]`` (test rows by user and item; with ``new_tokens`` when generation counted them)."""
    frame = with_history(prepared, answers)
    tokens = frame["new_tokens"].tolist() if "new_tokens" in frame else None
    return answer_tallies(frame[column].tolist(), check_claims(prepared, config, frame, column),
                          shown_titles(prepared, frame), prepared.items["title"].tolist(), tokens,
                          config.llm.max_new_tokens)


def answer_report(prepared: PreparedData, config: Config, answers: pd.DataFrame) -> dict:
    """All measures of ``answers`` (columns user, item, label, reference, generated, p_yes, allowed and,
    when generation counted them, new_tokens)."""
    titles = prepared.items["title"].tolist()
    texts = answers["generated"].tolist()
    report = explanation_report(answers["reference"].tolist(), texts, [set(a) for a in answers["allowed"]], titles,
                                answers["p_yes"].tolist(), cache_dir=config.paths.cache)
    tokens = answers["new_tokens"].tolist() if "new_tokens" in answers else None
    claims = check_claims(prepared, config, with_history(prepared, answers), "generated")
    return report | text_measures(texts, claims, tokens, config.llm.max_new_tokens, title_words(titles))


def stored_report(prepared: PreparedData, config: Config, name: str, rules: bool = True) -> dict:
    """Rescore a system's stored answers and rewrite their metrics file (how long generation took, the dtype
    and the decoding it ran with are kept)."""
    path = answers_path(config, name, rules)
    if not path.exists():
        raise FileNotFoundError(f"{name}: no stored reasoning in {path}; run eval-reasoning {name} first")
    report = answer_report(prepared, config, pd.read_parquet(path))
    metrics = answers_metrics_path(config, name, rules)
    generation = read_json(metrics) if metrics.exists() else {}
    report = report | {key: generation[key] for key in GENERATION_KEYS if key in generation}
    write_json(metrics, report)
    return report


def references_report(prepared: PreparedData, config: Config, references: pd.DataFrame) -> dict:
    """The teacher's reference traces (columns user, item, trace) measured as answers: the ceiling."""
    references = with_history(prepared, references[["user", "item", "trace"]])
    titles = prepared.items["title"].tolist()
    texts = references["trace"].tolist()
    claims = check_claims(prepared, config, references, "trace")
    return ({"grounding_rate": round(grounding_rate(texts, shown_titles(prepared, references), titles), 4)}
            | text_measures(texts, claims, known_words=title_words(titles)) | {"rows": len(texts)})

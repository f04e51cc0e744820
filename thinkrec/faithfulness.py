"""Are an answer's reasons the real ones? Counterfactual checks of the films a written answer cites.

For each stored answer (a system's reasoning for one test row) the user is refolded from their own
ratings before that row (``thinkrec.serving.whatif``), and the system's P(Yes) is read again after
edits to those ratings. The verdict is the one the text states, or the system's own score when it
states none. A film "cited in support" is one the prompt showed, the text names, and the user rated
the way the verdict goes (liked for Yes, disliked for No).

* necessity: remove the supporting films from the ratings; a hit when P(Yes) moves against the
  verdict by at least ``whatif.min_shift`` or the verdict the refolded user got flips;
* control: remove as many films drawn at random from the rest of the history the prompt shows (and,
  a stricter control, drawn only among those rated the same way as the supporting films);
* sufficiency: keep only the cited films in the prompt's history (the fold-in keeps every rating but
  the uncited ones among those the prompt showed); the verdict survives or not. Its control keeps as
  many films drawn at random from the shown history.

The baseline of every edit is the same user refolded with nothing edited. Answers that cite no shown
film, or cite only films that go against their verdict, are counted apart. Rates come with
percentile bootstrap intervals over answers; the necessity-control gap is bootstrapped paired.

A record depends on its answer only through the verdict and the films it cites, so when the answers are
rewritten (a change of decoding, say) the records of answers whose verdict and citations stayed the same are
carried over from the previous measurement; a sample of them is measured again first, and unless every one
comes out the same (P(Yes) within ``CARRY_TOLERANCE``) nothing is carried.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from thinkrec import registry
from thinkrec.chunks import Chunks, Unfinished, run_chunks
from thinkrec.config import Config, WhatIfConfig
from thinkrec.errors import CheckpointError
from thinkrec.files import read_json, sha256_of, write_json
from thinkrec.manifest import write_manifest
from thinkrec.reasoning_scores import answers_path
from thinkrec.serving.whatif import Editor
from thinkrec.text_metrics import cited_titles, stated_verdict
from thinkrec.timebox import TimeBox

if TYPE_CHECKING:  # the bank loads the LLM stack; the report reads results without it
    from thinkrec.serving.bank import LLMBank

log = logging.getLogger(__name__)
FILE = "faithfulness.json"
EDITS = ("necessity", "control", "control_same_label", "sufficiency", "sufficiency_control")
CARRY_CHECKS = 8  # carried records measured again, to check that they come out the same, before any is carried
CARRY_TOLERANCE = 1e-4  # how far a P(Yes) measured again may lie from the carried one (another CPU's rounding)
SUPPORTED, NOTHING, AGAINST = "supported", "cites nothing", "cites only films against its verdict"


def answers_file(config: Config, system: str) -> Path:
    """The stored answers of a system: its reasoning on the reference test rows."""
    return answers_path(config, system)


def result_file(config: Config, system: str) -> Path:
    return registry.folder(config, system) / FILE


def citations(text: str, shown_items: np.ndarray, shown_labels: np.ndarray, titles: list[str],
              verdict: int) -> tuple[list[int], list[int]]:
    """The shown films the text cites, and those of them rated the way the verdict goes (its support)."""
    named = {title.lower() for title in cited_titles(text, titles)}
    cited = [int(i) for i in dict.fromkeys(shown_items.tolist()) if titles[i].lower() in named]
    label_of = dict(zip(shown_items.tolist(), shown_labels.tolist()))
    return cited, [i for i in cited if label_of[i] == verdict]


def hit(verdict: int, p_before: float, p_after: float, min_shift: float) -> bool:
    """The edit moved P(Yes) against the verdict by ``min_shift`` or more, or flipped a verdict that agreed."""
    sign = 1 if verdict else -1
    flipped = (p_before > 0.5) == bool(verdict) and (p_after > 0.5) != bool(verdict)
    return bool(sign * (p_after - p_before) <= -min_shift or flipped)


def answer_head(editor: Editor, row, titles: list[str], shown_len: int) -> dict:
    """The part of an answer's record that needs no scoring: its verdict, its citations and their kind."""
    user, item = int(row.user), int(row.item)
    items, labels = editor.ratings(user, item)
    shown_items, shown_labels = items[-shown_len:], labels[-shown_len:]
    stated = stated_verdict(row.generated)
    verdict = int(row.p_yes > 0.5) if stated is None else stated
    cited, support = citations(row.generated, shown_items, shown_labels, titles, verdict)
    return {"user": user, "item": item, "label": int(row.label), "verdict": verdict,
            "verdict_stated": stated is not None, "ratings": len(items), "shown": len(shown_items),
            "cited": len(cited), "support": len(support), "p_stored": float(row.p_yes),
            "kind": SUPPORTED if support else (AGAINST if cited else NOTHING),
            "cited_items": cited, "support_items": support}


def measure_answer(bank: LLMBank, editor: Editor, system: str, row, titles: list[str], shown_len: int,
                   rng: np.random.Generator) -> dict:
    """One answer's record: its verdict and citations, and P(Yes) before and after each edit."""
    record = answer_head(editor, row, titles, shown_len)
    user, item, verdict = record["user"], record["item"], record["verdict"]
    cited, support = record["cited_items"], record["support_items"]
    items, labels = editor.ratings(user, item)
    shown_items, shown_labels = items[-shown_len:], labels[-shown_len:]
    before = editor.case(editor.refold(user, items, labels), item)
    cases = {"before": before}
    uncited = [i for i in dict.fromkeys(shown_items.tolist()) if i not in cited]

    def without(removed: list[int], history: list[int] | None = None):
        keep = ~np.isin(items, removed)
        if not keep.any():
            return None
        shown = None
        if history is not None:
            in_history = np.isin(shown_items, history)
            shown = (shown_items[in_history], shown_labels[in_history])
        return editor.case(editor.refold(user, items[keep], labels[keep]), item, shown)

    def draw(pool: list[int], count: int) -> list[int] | None:
        return None if count == 0 or len(pool) < count else [int(i) for i in rng.choice(pool, count, replace=False)]

    same_label = [i for i in uncited if shown_labels[shown_items.tolist().index(i)] == verdict]
    drawn = {"control": draw(uncited, len(support)), "control_same_label": draw(same_label, len(support)),
             "sufficiency_control": draw(list(dict.fromkeys(shown_items.tolist())), len(cited))}
    if support:
        cases["necessity"] = without(support)
        cases["control"] = None if drawn["control"] is None else without(drawn["control"])
        cases["control_same_label"] = None if drawn["control_same_label"] is None else without(
            drawn["control_same_label"])
    if cited:
        cases["sufficiency"] = without(uncited, history=cited)
        kept = drawn["sufficiency_control"]
        if kept is not None:
            cases["sufficiency_control"] = without([i for i in uncited + cited if i not in kept], history=kept)
    record.update({f"{name}_items": films for name, films in drawn.items()})
    ready = {name: case for name, case in cases.items() if case is not None}
    scores = dict(zip(ready, bank.p_yes_cases(system, list(ready.values()))))
    record["p_before"] = scores["before"]
    for name in EDITS:
        record[f"p_{name}"] = scores.get(name)
    return record


def same_record(carried: dict, measured: dict) -> bool:
    """Whether a record measured again is the carried one: every field equal, P(Yes) within ``CARRY_TOLERANCE``."""
    if carried.keys() != measured.keys():
        return False
    for key, value in measured.items():
        if key.startswith("p_") and isinstance(value, float) and isinstance(carried[key], float):
            if abs(value - carried[key]) > CARRY_TOLERANCE:
                return False
        elif value != carried[key]:
            return False
    return True


def measure(bank: LLMBank, editor: Editor, system: str, answers: pd.DataFrame, titles: list[str], shown_len: int,
            settings: WhatIfConfig, store: Chunks | None = None, timebox: TimeBox | None = None,
            previous: list[dict] | None = None) -> tuple[list[dict], int]:
    """A record per stored answer (in the answers' order), ``whatif.chunk_answers`` at a time, saved in ``store``
    and stopped at the end of ``timebox`` as ``thinkrec.chunks.run_chunks`` does, and how many were carried over
    from ``previous`` (an earlier measurement's records, by position). Each answer draws its random controls
    from its own stream (the seed and its position), so a run cut into pieces draws what one run draws."""
    rows = list(answers.itertuples())

    def measured(i: int) -> dict:
        return measure_answer(bank, editor, system, rows[i], titles, shown_len,
                              np.random.default_rng([settings.seed, int(i)]))

    carried = carried_records(previous or [], rows, editor, titles, shown_len)
    checked = np.random.default_rng(settings.seed).permutation(sorted(carried))[:CARRY_CHECKS]
    if not all(same_record(carried[i], measured(i)) for i in checked):
        log.warning("%s: previous faithfulness records measured again came out different; measuring every answer",
                    system)
        carried = {}
    elif carried:
        log.info("%s: %d of %d records carried over from the previous measurement (answers with the same verdict "
                 "and citations; %d measured again first, all the same)", system, len(carried), len(rows),
                 len(checked))

    def work(positions: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"record": [json.dumps(carried.get(int(i)) or measured(int(i))) for i in positions]})

    step = settings.chunk_answers
    chunks = [np.arange(start, min(start + step, len(rows))) for start in range(0, len(rows), step)]
    done = run_chunks(chunks, work, store, timebox, f"faithfulness {system}")
    return [json.loads(record) for record in done["record"]], len(carried)


def carried_records(previous: list[dict], rows: list, editor: Editor, titles: list[str],
                    shown_len: int) -> dict[int, dict]:
    """The previous records, by position, whose answer has the same row, verdict and citations as the answer
    now at that position: a record depends on nothing else of the answer."""
    carried = {}
    for i, (record, row) in enumerate(zip(previous, rows)):
        head = answer_head(editor, row, titles, shown_len)
        if all(record.get(key) == value for key, value in head.items()):
            carried[i] = record
    return carried


def job_folder(config: Config, system: str, answers_path: Path, rows: int | None) -> Path:
    """Where the records of one measurement are saved until it finishes: named by a digest of the answers, the
    settings and every LLM and CF weight file (the edits rescore with them)."""
    digest = hashlib.sha256(sha256_of(answers_path).encode())
    digest.update(repr((rows, config.whatif, config.guest.fold_in_l2, config.llm.history_len)).encode())
    for path in sorted(config.paths.checkpoints.glob("**/*.safetensors")):
        digest.update(f"{path.relative_to(config.paths.checkpoints)}:{sha256_of(path)}".encode())
    return config.paths.training / "eval" / "faithfulness" / system / digest.hexdigest()[:16]


def _draws(n: int, settings: WhatIfConfig, stream: int) -> np.ndarray:
    """Bootstrap resamples of ``n`` answers: (settings.bootstrap, n) indexes, one seeded stream per figure."""
    return np.random.default_rng([settings.seed, stream]).integers(0, n, size=(settings.bootstrap, n))


def _interval(values: np.ndarray, settings: WhatIfConfig, stream: int) -> dict:
    """The mean of 0/1 ``values`` with a 95 % percentile bootstrap interval."""
    if len(values) == 0:
        return {"rate": None, "low": None, "high": None, "n": 0}
    low, high = np.percentile(values[_draws(len(values), settings, stream)].mean(axis=1), [2.5, 97.5])
    return {"rate": round(float(values.mean()), 4), "low": round(float(low), 4), "high": round(float(high), 4),
            "n": int(len(values))}


def _gap(first: np.ndarray, second: np.ndarray, settings: WhatIfConfig, stream: int) -> dict:
    """mean(first) - mean(second) over paired answers, with a paired 95 % bootstrap interval."""
    if len(first) == 0:
        return {"gap": None, "low": None, "high": None, "n": 0}
    draws = _draws(len(first), settings, stream)
    low, high = np.percentile(first[draws].mean(axis=1) - second[draws].mean(axis=1), [2.5, 97.5])
    return {"gap": round(float(first.mean() - second.mean()), 4), "low": round(float(low), 4),
            "high": round(float(high), 4), "n": int(len(first))}


def summarise(records: list[dict], settings: WhatIfConfig) -> dict:
    """Rates with bootstrap intervals: necessity, its controls and their gaps, sufficiency and its control."""
    table = pd.DataFrame(records)
    kinds = table["kind"].value_counts().to_dict()
    summary = {"answers": len(table), "verdict_stated": int(table["verdict_stated"].sum()),
               "kinds": {kind: int(kinds.get(kind, 0)) for kind in (SUPPORTED, AGAINST, NOTHING)},
               "refolded_agrees": round(float(((table["p_before"] > 0.5) == table["verdict"].astype(bool)).mean()), 4)}

    def hits(name: str, rows: pd.DataFrame) -> np.ndarray:
        return np.array([hit(r.verdict, r.p_before, getattr(r, f"p_{name}"), settings.min_shift)
                         for r in rows.itertuples()], dtype=float)

    def survives(name: str, rows: pd.DataFrame) -> np.ndarray:
        return ((rows[f"p_{name}"].to_numpy(dtype=float) > 0.5) == rows["verdict"].to_numpy(dtype=bool)).astype(float)

    supported = table[table["kind"] == SUPPORTED]
    for stream, name in enumerate(("necessity", "control", "control_same_label")):
        rows = supported[supported[f"p_{name}"].notna()]
        summary[name] = _interval(hits(name, rows), settings, stream)
        if len(rows):
            sign = np.where(rows["verdict"] == 1, 1.0, -1.0)
            summary[name]["mean_shift_against"] = round(float((sign * (rows["p_before"] - rows[f"p_{name}"])).mean()),
                                                        4)
    for stream, control in enumerate(("control", "control_same_label"), start=3):
        rows = supported[supported["p_necessity"].notna() & supported[f"p_{control}"].notna()]
        summary[f"gap_{control}"] = _gap(hits("necessity", rows), hits(control, rows), settings, stream)
    cited = table[table["cited"] > 0]
    for stream, name in enumerate(("sufficiency", "sufficiency_control"), start=5):
        rows = cited[cited[f"p_{name}"].notna()]
        summary[name] = _interval(survives(name, rows), settings, stream)
    return summary


def stage_faithfulness(explorer, config: Config, systems: list[str], rows: int | None = None,
                       answers_path: Path | None = None, timebox: TimeBox | None = None) -> dict:
    """Measure each system on its stored answers (the first ``rows`` of them, or of ``answers_path``) and
    write ``faithfulness.json`` beside them: the settings, one record per answer and the summary. The records
    are saved chunk by chunk under ``training/eval/faithfulness/``: stopped at the end of ``timebox`` or killed,
    the same call continues; the stopped system reports
    ``finished: false`` and the systems after it are left for that call."""
    results = {}
    titles = explorer.data.items["title"].tolist()
    for system in systems:
        if system not in explorer.llm_systems():
            raise CheckpointError(f"{system!r} is not loaded; loaded LLM systems: {', '.join(explorer.llm_systems())}")
        path = answers_path or answers_file(config, system)
        if not path.exists():
            raise CheckpointError(f"{path}: no stored answers for {system} (run `python -m thinkrec "
                                    f"eval-reasoning {system}` first)")
        answers = pd.read_parquet(path)
        answers = answers.head(rows) if rows else answers
        started = time.perf_counter()
        folder = job_folder(config, system, path, rows)
        settings = {"min_shift": config.whatif.min_shift, "bootstrap": config.whatif.bootstrap,
                    "seed": config.whatif.seed, "fold_in_l2": config.guest.fold_in_l2,
                    "shown_history": config.llm.history_len}
        earlier = read_result(config, system)
        previous = earlier["records"] if earlier and earlier.get("settings") == settings else None
        try:
            records, carried = measure(explorer.bank, explorer.editor, system, answers, titles,
                                       config.llm.history_len, config.whatif, Chunks(folder), timebox, previous)
        except Unfinished as stop:
            log.info("%s: stopped at the end of the time box, %d of %d answers measured; the same command continues",
                     system, stop.done, stop.total)
            results[system] = {"finished": False, "measured": stop.done, "answers": stop.total}
            break
        summary = summarise(records, config.whatif)
        result = {"system": system, "answers_file": path.relative_to(config.paths.checkpoints).as_posix()
                  if path.is_relative_to(config.paths.checkpoints) else path.name,
                  "answers_sha256": sha256_of(path), "settings": settings, "carried": carried,
                  "seconds": round(time.perf_counter() - started, 1), "summary": summary, "records": records}
        write_json(result_file(config, system), result)
        write_manifest(config.paths.checkpoints)  # the tree stays loadable: its manifest lists the new result
        shutil.rmtree(folder.parent, ignore_errors=True)
        log.info("%s: faithfulness on %d answers written to %s", system, len(records), result_file(config, system))
        results[system] = summary
    return results


def read_result(config: Config, system: str) -> dict | None:
    """A system's stored faithfulness result, None when it was not measured."""
    path = result_file(config, system)
    return read_json(path) if path.exists() else None


def _rate(figure: dict) -> str:
    if not figure["n"]:
        return "n/a"
    return f"{figure['rate']:.2f} [{figure['low']:.2f}, {figure['high']:.2f}] (n {figure['n']})"


def _signed_gap(figure: dict) -> str:
    if not figure["n"]:
        return "n/a"
    return f"{figure['gap']:+.2f} [{figure['low']:+.2f}, {figure['high']:+.2f}]"


def _markdown_table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(map(str, row)) + " |" for row in rows]]


def _reading(label: str, s: dict) -> str:
    """One sentence per system: how far the edits move P(Yes), and whether cited films matter more than random ones."""
    if not s["necessity"]["n"]:
        return f"- {label}: no answer cites a shown film in support of its verdict."
    gap = s["gap_control_same_label"] if s["gap_control_same_label"]["n"] else s["gap_control"]
    verdict = ("removing the cited films moves the verdict measurably more than removing random films rated the "
               "same way" if gap["low"] > 0 else "no measurable difference between removing the cited films and "
               "removing random films rated the same way")
    return (f"- {label}: removing the supporting films moves P(Yes) against the verdict by "
            f"{s['necessity']['mean_shift_against']:+.3f} on average (random films: "
            f"{s['control']['mean_shift_against']:+.3f}, same-label random films: "
            f"{s['control_same_label'].get('mean_shift_against', float('nan')):+.3f}); {verdict}.")


def report_section(config: Config) -> list[str]:
    """RESULTS.md's section: every measured system's figures, recomputed from its stored per-answer records."""
    rows, notes = [], []
    for system in reversed(registry.keys()):  # ThinkRec-fused first, as the reasoning section
        result = read_result(config, system)
        if result is None:
            continue
        settings = WhatIfConfig(**{k: result["settings"][k] for k in ("min_shift", "bootstrap", "seed")})
        s = summarise(result["records"], settings)
        kinds = s["kinds"]
        notes.append(_reading(registry.label(system), s))
        rows.append([registry.label(system), s["answers"], f"{kinds[SUPPORTED]} / {kinds[AGAINST]} / {kinds[NOTHING]}",
                     _rate(s["necessity"]), _rate(s["control"]), _signed_gap(s["gap_control"]),
                     _rate(s["control_same_label"]), _signed_gap(s["gap_control_same_label"]),
                     _rate(s["sufficiency"]), _rate(s["sufficiency_control"]), f"{s['refolded_agrees']:.2f}"])
    if not rows:
        return []
    shift = config.whatif.min_shift
    return ["## Are the cited reasons the real ones? (faithfulness)", "",
            ("`python -m thinkrec eval-faithfulness` edits the user's ratings behind each stored answer on the "
             "reference rows and re-scores the same system (no new text is generated). Every edit is measured "
             "against the user refolded from their unedited ratings (trained weights fixed), so only the edit "
             "differs. *Supporting* films: shown in the prompt, named in the answer, rated the way its verdict "
             f"goes. *Necessity*: remove them; a hit when P(Yes) moves against the verdict by {shift} or more or "
             "the verdict flips. *Control*: remove as many random uncited films from the shown history; the "
             "*same-label control* draws them only among films rated like the supporting ones, since removing "
             "any liked film lowers P(like). *Sufficiency*: the prompt keeps only the cited films (the fold-in "
             "drops the uncited shown ones); the share of verdicts that survive, beside keeping as many random "
             "shown films. 95 % percentile bootstrap intervals over answers; gaps are paired. Answers that cite "
             "no shown film, or only films against their verdict, are counted apart (supported / against / "
             "nothing). The last column: how often the refolded, unedited user still gets the stated verdict."), "",
            *_markdown_table(["system", "answers", "supported / against / nothing", "necessity", "control",
                     "gap", "same-label control", "gap", "sufficiency", "sufficiency control",
                     "refold agrees"], rows), "", *notes]

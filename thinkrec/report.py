"""The results report: every figure recomputed from the stored predictions in ``checkpoints/``.

``python -m thinkrec report`` writes ``RESULTS.md`` and its chart ``assets/results_auc.svg``.
AUC and UAUC are recomputed here from the prediction files and the reasoning metrics from the
stored generated texts (never copied from a metrics file); configuration facts (token budgets,
wall times, the clustering chosen) are read from the checkpoints' JSON. The paper's ML-1M
figures are shown beside them as context only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from thinkrec import registry
from thinkrec.cf.fold_in import cosines_to_trained, folded_scores, refold_users
from thinkrec.cf.store import cf_dir, load_cf_model, predictions_file
from thinkrec.config import AnalysisConfig, Config
from thinkrec.data.prepared import PreparedData
from thinkrec.faithfulness import report_section as faithfulness_section
from thinkrec.files import read_json
from thinkrec.fusion.experts import experts_dir, has_experts, load_shipped_clustering, read_selection
from thinkrec.intervals import Interval, UserBootstrap, paired_difference, system_intervals, verdict
from thinkrec.llm.systems import with_trained_traces
from thinkrec.metrics import auc_report
from thinkrec.pipeline import reference_traces
from thinkrec.predictions import metrics_by_cluster, metrics_by_system, systems_in, test_predictions
from thinkrec.reasoning_scores import answer_report, answers_path, references_report, tallies_of
from thinkrec.svg_chart import grouped_bars
from thinkrec.text_intervals import MEASURES, TextMeasure, judged, ratio_difference
from thinkrec.workbench import reference_system, write_workbench

PAPER_ML1M = {  # as reported in arXiv 2505.15091 (ML-1M, Llama-3-8B-Instruct): AUC, UAUC
    "MF": (0.6401, 0.6079), "LightGCN": (0.6140, 0.6230), "SASRec": (0.6956, 0.6687),
    "TALLRec": (0.6872, 0.6553), "CoLLM": (0.7141, 0.6672), "ThinkRec": (0.7764, 0.6775),
}
PAPER_METEOR = {"TALLRec": 0.0275, "CoLLM": 0.0003, "ThinkRec": 0.0333}
FOLDED_ENCODERS = ("mf", "lightgcn")  # the encoders a new user is folded into (SASRec reads the history itself)
CHART = Path("assets") / "results_auc.svg"


def _table(header: list[str], rows: list[list]) -> list[str]:
    def cell(value) -> str:
        if isinstance(value, float) and math.isnan(value):
            return "n/a"
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 10 else f"{value:.0f}"
        return str(value)

    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]]


def match_note(config: Config) -> str:
    """Whether the shipped CoLLM-style model was trained with the match token, in words."""
    path = registry.folder(config, "collm") / "config.json"
    trained_with_match = path.exists() and read_json(path)["llm_config"].get("cf_match", False)
    return " (including the user-item match token)" if trained_with_match else ""


def signed(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.4f}"


def interval_text(low: float, high: float, sign: bool = False) -> str:
    """"[low, high]" to four decimals (signed for differences); "n/a" without an interval."""
    if math.isnan(low) or math.isnan(high):
        return "n/a"
    return f"[{signed(low)}, {signed(high)}]" if sign else f"[{low:.4f}, {high:.4f}]"


PHRASES = {"beats": "beats", "level with": "is level with", "below": "is below", "n/a": "cannot be compared with"}


def interval_rows(overall: pd.DataFrame, reference: str | None) -> list[list]:
    """One row per system: AUC and UAUC with their intervals, then the paired AUC difference to the reference."""
    rows = []
    for r in overall.itertuples():
        row = [registry.label(r.key), r.auc, interval_text(r.auc_low, r.auc_high), r.uauc,
               interval_text(r.uauc_low, r.uauc_high)]
        if reference:
            is_reference = r.key == reference
            row += ["(reference)" if is_reference else signed(r.auc_diff),
                    "" if is_reference else interval_text(r.auc_diff_low, r.auc_diff_high, sign=True),
                    "" if is_reference else r.verdict]
        rows.append(row)
    return rows


def systems_section(prepared: PreparedData, config: Config, predictions: pd.DataFrame) -> list[str]:
    settings = config.analysis
    stored = pd.read_parquet(predictions_file(config))
    test = stored[stored["split"] == "test"].reset_index(drop=True)
    systems = systems_in(predictions)
    reference = reference_system(predictions)
    overall = system_intervals(predictions, systems, reference, settings.resamples, settings.seed, settings.confidence)
    missing = [registry.label(s) for s in registry.keys(registry.LLM, registry.FUSED) if s not in predictions]
    eligible = int(predictions.groupby("user")["label"].agg(lambda labels: 0 < labels.sum() < len(labels)).sum())
    users = predictions["user"].nunique()
    whole = len(predictions) == len(test)
    rows_text = (f"the whole test split of the per-user chronological split ({len(predictions)} rows)" if whole else
                 f"{len(predictions)} rows drawn at random (seed {config.llm.seed}) from the {len(test)} test rows of "
                 "the per-user chronological split")
    header = ["system", "AUC", f"{settings.confidence:.0%} interval", "UAUC", f"{settings.confidence:.0%} interval"]
    if reference:
        name = registry.label(reference)
        header += [f"AUC − {name}", f"{settings.confidence:.0%} interval", f"vs {name}"]
    lines = ["## Every system on the same test rows", "",
             (f"Every system is scored on the same rows: {rows_text}, from {users} users. Intervals come from "
              f"{settings.resamples} bootstrap resamples of the users (not of the rows: a user's rows move together; "
              f"seed {settings.seed}). UAUC averages over the {eligible} users with both a like and a dislike among "
              "these rows, so its intervals are wide. The last columns are each system's AUC minus that of the best "
              f"System-1 model here, {registry.label(reference) if reference else 'none'}, resampled on the same users "
              "(paired): *beats* when the whole interval is above 0, *below* when it is under 0, else *level with*."),
             "", *_table(header, interval_rows(overall, reference)), "",
             f"![AUC and UAUC by system]({CHART.as_posix()})", "",
             ("The LLM systems share one backbone and one prompt. Zero-shot: the untrained backbone. TALLRec-style: "
              "a LoRA on titles and like/dislike labels only. CoLLM-style: a LoRA and projectors reading the CF "
              f"soft tokens{match_note(config)} and keywords, trained on Yes/No alone. ThinkRec-global: the same "
              "inputs, trained on Yes/No and reasoning rows. ThinkRec-fused: ThinkRec's cluster experts mixed "
              "by the gate.")]
    lines += target_verdict(predictions, overall, reference, settings)
    if not whole:
        full = system_intervals(test, [s for s in registry.keys(registry.SYSTEM_1) if s in test], None,
                                settings.resamples, settings.seed, settings.confidence)
        lines += ["", f"The System-1 encoders on the whole test split ({len(test)} rows, {test['user'].nunique()} "
                      "users), intervals resampling users as above:", "",
                  *_table(header[:5], [row[:5] for row in interval_rows(full, None)])]
    if missing:
        lines += ["", f"Not trained or scored yet: {', '.join(missing)}."]
    return lines


def target_verdict(predictions: pd.DataFrame, overall: pd.DataFrame, reference: str | None,
                   settings: AnalysisConfig) -> list[str]:
    """Whether ThinkRec-fused beats the best System-1 model and the best LLM baseline, in one sentence
    computed from the paired user-bootstrap intervals of its AUC differences."""
    if "fused" not in predictions or reference is None:
        return []
    fused = overall.set_index("key").loc["fused"]
    claims = [f"{PHRASES[fused['verdict']]} the best System-1 model, {registry.label(reference)} (AUC difference "
              f"{signed(fused['auc_diff'])}, {settings.confidence:.0%} interval "
              f"{interval_text(fused['auc_diff_low'], fused['auc_diff_high'], sign=True)})"]
    baselines = [s.key for s in registry.SYSTEMS if s.kind == registry.LLM and s.baseline and s.key in predictions]
    if baselines:
        rival = max(baselines, key=lambda s: overall.set_index("key").loc[s, "auc"])
        difference = paired_difference(predictions, "fused", rival, settings.resamples, settings.seed,
                                       settings.confidence)
        claims.append(f"{PHRASES[verdict(difference)]} the best LLM baseline, {registry.label(rival)} "
                      f"({signed(difference.estimate)}, "
                      f"{interval_text(difference.low, difference.high, sign=True)})")
    return ["", (f"**The paper's claim on this data:** ThinkRec-fused (AUC {fused['auc']:.4f}) "
                 f"{' and '.join(claims)}, resampling {int(fused['users'])} users.")]


def fusion_section(config: Config, predictions: pd.DataFrame) -> list[str]:
    if not has_experts(config):
        return ["## Expert fusion", "", "No cluster experts trained yet (`python -m thinkrec experts`)."]
    selection = read_selection(config)
    clustering = load_shipped_clustering(config)
    gate = selection["gate"]
    lines = ["## Expert fusion", "",
             (f"Users clustered on {selection['encoder']} embeddings (standardised, on the unit sphere: the space "
              f"the gate's cosine uses). Gate: tau = {gate['tau']}, one expert when max w > 0.5 + "
              f"{gate['single_margin']}/K, the global adapter when entropy(w) >= {gate['entropy_ratio']} ln K."), "",
             *choice_lines(selection)]
    fused_file = experts_dir(config) / "test_predictions.parquet"
    whole = fused_file.exists() and read_json(experts_dir(config) / "metrics.json").get("scope") == "all"
    if fused_file.exists():
        table = pd.read_parquet(fused_file)
        modes = [[label, *auc_report(table["user"], table["label"], table[column]).values()]
                 for label, column in (("fused (the gate's choice)", "p_yes"), ("global adapter only", "p_global"),
                                       ("hard routing (top expert only)", "p_hard"))]
        shares = table["decision"].value_counts(normalize=True)
        lines += ["", f"{'The whole test split' if whole else 'Test subset'}, one model three ways:", "",
                  *_table(["routing", "AUC", "UAUC", "rows"], [[m[0], m[1], m[2], m[3]] for m in modes]), "",
                  "Routing branches on the test rows: " + ", ".join(f"{k} {v:.1%}" for k, v in shares.items()) + "."]
    per_cluster = metrics_by_cluster(predictions, clustering.labels)
    wide = per_cluster.pivot(index="system", columns="cluster", values="auc")
    order = [registry.label(s) for s in systems_in(predictions) if registry.label(s) in wide.index]
    lines += ["", f"{'Whole-split' if whole else 'Test-subset'} AUC within each cluster:", "",
              *_table(["system", *[f"cluster {c}" for c in wide.columns]],
                      [[name, *wide.loc[name].tolist()] for name in order])]
    return lines


def choice_lines(selection: dict) -> list[str]:
    """How the clustering was chosen, and the table of candidates it was chosen from."""
    candidates = selection["candidates"]
    if "rule" not in selection:  # chosen before the cheap measures existed: by the probe experts' valid AUC
        rows = [[c.get("method", selection["method"]), c["k"], c["valid"]["auc"], c["valid"]["uauc"],
                 round(c["silhouette"], 4), round(c["cohens_d"], 3) if c.get("cohens_d") is not None else "",
                 " / ".join(map(str, c["sizes"]))] for c in candidates]
        return [f"{selection['method']} with K = {selection['k']} was chosen among the candidates below by the fused "
                "model's AUC on the validation subset (small-budget experts).", "",
                *_table(["clustering", "K", "valid AUC", "valid UAUC", "silhouette", "Cohen's d (activity)",
                         "cluster sizes"], rows)]
    rows = [[c["method"], c["k"], *(f"{c['routing'][key]:.1%}" for key in ("single_own", "fused_own", "global")),
             f"{c['routing']['single_other'] + c['routing']['fused_other']:.1%}",
             "n/a" if c["silhouette"] is None else c["silhouette"], "n/a" if c["cohens_d"] is None else c["cohens_d"],
             c["fewest_traces"], c["valid"]["auc"] if "valid" in c else "", " / ".join(map(str, c["sizes"]))]
            for c in candidates]
    tokens = " / ".join(f"{e['train_tokens']:,}" for e in selection["experts"])
    return [(f"The clustering was chosen before any expert was trained fully, by one rule ({selection['rule']}): "
             f"{selection['reason']}. Each expert then trained from the global adapter on its own cluster's traces "
             f"and rows ({tokens} tokens)."), "",
            "Where the gate sends each user, per candidate (own cluster's expert alone, own cluster's expert weighing "
            "most in a fusion, the global adapter, another cluster's expert):", "",
            *_table(["clustering", "K", "own cluster, alone", "own cluster, fused", "global", "other cluster",
                     "silhouette", "Cohen's d (activity)", "fewest traces in a cluster", "probe valid AUC",
                     "cluster sizes"], rows)]


class AnswerSet(NamedTuple):
    """One stored set of answers on the reference rows: the table, the column of its texts, and whether it was
    decoded with the configured rules (the teacher's references count as with them: they are no decoding)."""

    frame: pd.DataFrame
    column: str
    rules: bool = True


REFERENCES_LABEL = "teacher's references (ceiling)"


def stored_answers(config: Config) -> dict[str, AnswerSet]:
    """Every system's stored answers on the reference rows by label, ThinkRec-fused first, then those decoded
    without the rules."""
    answers = {}
    for rules in (True, False):
        for system in reversed(registry.keys()):
            path = answers_path(config, system, rules)
            if registry.system(system).writes_text and path.exists():
                label = registry.label(system) + ("" if rules else ", no decoding rules")
                answers[label] = AnswerSet(pd.read_parquet(path), "generated", rules)
    return answers


def reasoning_section(prepared: PreparedData, config: Config) -> list[str]:
    answers = stored_answers(config)
    reports = {label: answer_report(prepared, config, entry.frame) for label, entry in answers.items()}
    if not reports:
        return ["## Reasoning", "", "Not generated yet (`python -m thinkrec eval-reasoning fused thinkrec`)."]
    rows = [[name, *[report[k] for k in ("meteor", "bleu4", "rouge_l", "grounding_rate", "verdict_agreement",
                                         "stated_share", "rows")]]
            for name, report in reports.items() if answers[name].rules]
    traced = with_trained_traces(config)  # the teacher's traces the shipped answers were compared with
    if traced.traces_path.exists():
        references = reference_traces(traced)
        reports = {REFERENCES_LABEL: references_report(prepared, traced, references), **reports}
        answers[REFERENCES_LABEL] = AnswerSet(references, "trace")
    return ["## Reasoning on the reference test rows", "",
            (f"Generated greedily ({config.llm.min_new_tokens} to {config.llm.max_new_tokens} new tokens, no "
             f"{config.llm.no_repeat_ngram}-gram of the answer repeated"
             f"{' outside a quoted title' if config.llm.no_repeat_spares_quotes else ''}"
             f"{', no history film cited twice' if config.llm.no_repeated_citations else ''}) for the held-out "
             "reference rows and compared with the grounded teacher's traces. Grounding: share of cited titles "
             "that are in the history the prompt shows or are the target (a title is cited when it is quoted, "
             "given with its year, or, of several words, capitalised as a name: \"here the candidate is\" cites no "
             "film; a quoted name that is no film of the catalogue, invented or garbled, counts as ungrounded). "
             "Verdict agreement: the verdict the text states vs. P(Yes) > 0.5, over the texts that state one "
             "(stated share)."), "",
            *_table(["system", "METEOR", "BLEU-4", "ROUGE-L", "grounding", "verdict agreement", "stated share",
                     "rows"], rows), "", *reasoning_measures_table(reports), "",
            *reasoning_differences_table(prepared, config, answers)]


def reasoning_differences_table(prepared: PreparedData, config: Config, answers: dict[str, AnswerSet]) -> list[str]:
    """Each set of answers' measures minus the first system's (ThinkRec-fused's, where stored) on the reference
    rows both answered, with paired intervals over users and the verdict they allow (``text_intervals``)."""
    systems = [label for label in answers if label != REFERENCES_LABEL]
    if not systems or len(answers) < 2:
        return []
    keys, settings = ["user", "item"], config.analysis
    base_name = systems[0]
    tallies = {label: tallies_of(prepared, config, entry.frame, entry.column) for label, entry in answers.items()}
    base = answers[base_name].frame[keys].reset_index(drop=True).reset_index(names="base_row")
    rows = []
    for name, entry in answers.items():
        if name == base_name:
            continue
        common = base.merge(entry.frame[keys].reset_index(drop=True).reset_index(names="row"), on=keys)
        bootstrap = UserBootstrap(common["user"].to_numpy(), settings.resamples, settings.seed, settings.confidence)
        mine, theirs = common["row"].to_numpy(), common["base_row"].to_numpy()
        differences = [(ratio_difference(bootstrap, tallies[name][m.key][mine], tallies[base_name][m.key][theirs]), m)
                       for m in MEASURES]
        rows.append([name, len(common), *(difference_cell(d, m) for d, m in differences)])
    return [(f"Differences to {base_name} on the reference rows both answered: each measure minus {base_name}'s, "
             f"with its paired {100 * settings.confidence:g} % interval over users ({settings.resamples} resamples); "
             "better or worse where the interval excludes 0 (less repetition and fewer loops are better), level "
             "where it holds 0."), "",
            *_table(["answers", "rows", *(measure.label for measure in MEASURES)], rows)]


def difference_cell(difference: Interval, measure: TextMeasure) -> str:
    """"+0.018 [-0.041, +0.076] level"; "n/a" where one side judged nothing (no reactions, say)."""
    if math.isnan(difference.estimate):
        return "n/a"
    return (f"{difference.estimate:+.3f} [{difference.low:+.3f}, {difference.high:+.3f}] "
            f"{judged(difference, measure)}")


def reasoning_measures_table(reports: dict[str, dict]) -> list[str]:
    """Loops, repetitions, garbles, completion, claim accuracy, answers with a false claim, conclusion and argument
    agreement of each set of answers (the teacher's references, when stored, first: the ceiling)."""
    rows = [[name, report["loop_rate"], report["repetition_rate"], report["garble_rate"],
             report["completion_rate"],
             f"{report['claim_accuracy']:.4f} ({report['claims_checked']})" if report["claims_checked"] else "n/a",
             report["falsehood_rate"], by_kind_cell(report), conclusion_cell(report), argument_cell(report),
             *[report.get(k, math.nan) for k in ("meteor", "bleu4", "rouge_l")],
             report["grounding_rate"]] for name, report in reports.items()]
    return [("Loop rate: answers in which a word 3-gram occurs three times or more. Repetition: answers that state "
             "one argument twice (a reaction to the same film twice or, outside the sentences that give reactions, a "
             "phrase of seven words twice, a quoted title counting as one word). Garbled: answers that run together "
             "two words they say apart elsewhere (\"theirhistory\" beside \"their history\", what the no-repeat rule "
             "leaves behind). Completion: answers that end a sentence and were not cut at the token cap. Claim "
             "accuracy: the share of checked claims that are true "
             "(`thinkrec/claims.py`: the films' genres, eras and years, the reactions the text gives the user to "
             "their history films, audience and profile-genre claims; eras in thirds of a decade), claims checked in "
             "brackets. With a false claim: the share of answers that state at least one false claim (claim "
             "accuracy counts claims, so a few answers' false reactions hide among many true genres and eras). "
             "Conclusion agreement: the stance of the last sentence matches the opening verdict, over the "
             "answers whose last sentence takes a clear stance (in brackets the share that takes none). Argument "
             "agreement: the share of the arguments an answer states (the reactions it gives the user, what viewers "
             "made of the target, the user's appetite for the target's genres) that point the way their place calls "
             "for, towards the verdict in a supporting sentence and against it after \"Although\", true or not "
             "(arguments judged in brackets)."), "",
            *_table(["system", "loop rate", "repetition", "garbled", "completion", "claim accuracy (claims)",
                     "with a false claim", "true / checked by kind", "conclusion agreement (unclear share)",
                     "argument agreement (arguments)",
                     "METEOR", "BLEU-4", "ROUGE-L", "grounding"], rows)]


def by_kind_cell(report: dict) -> str:
    """"reaction 41/86, era 17/17, ...": the checked claims of each kind and how many were true."""
    kinds = report.get("claims_by_kind") or {}
    return ", ".join(f"{kind} {true}/{checked}" for kind, (true, checked) in kinds.items()) or "n/a"


def conclusion_cell(report: dict) -> str:
    agreement = report["conclusion_agreement"]
    shown = "n/a" if math.isnan(agreement) else f"{agreement:.4f}"
    return f"{shown} ({report['conclusion_unclear_share']:.2f})"


def argument_cell(report: dict) -> str:
    agreement = report["argument_agreement"]
    return "n/a" if math.isnan(agreement) else f"{agreement:.4f} ({report['arguments_judged']})"


def training_seconds(train: dict) -> str:
    if train.get("seconds") is not None:
        return f"{train['seconds']:.0f}"
    return f"{train.get('seconds_this_run', 0):.0f} (last run only)"


def training_runs(train: dict) -> list[dict]:
    """A system's training record followed by those of the systems it started from (``earlier``), latest first."""
    return [train, *training_runs(train["earlier"])] if "earlier" in train else [train]


def per_run(runs: list[dict], key: str):
    """One table cell: the value of a single run as it is, or each run's, first run first, joined by " + "."""
    return runs[0][key] if len(runs) == 1 else " + ".join(f"{run[key]:,}" for run in runs)


def cost_section(config: Config) -> list[str]:
    rows = []
    for system in reversed(registry.keys(registry.LLM)):  # the trained ones: ThinkRec first
        path = registry.folder(config, system) / "config.json"
        if path.exists():
            runs = training_runs(read_json(path)["train"])[::-1]  # the first run first
            label = registry.label(system) + (f" ({len(runs)} runs)" if len(runs) > 1 else "")
            rows.append([label, *(per_run(runs, key) for key in ("train_tokens", "train_examples",
                                                                   "reasoning_examples")),
                         runs[-1]["best_valid_auc"], " + ".join(training_seconds(run) for run in runs)])
    if has_experts(config):
        for number, train in enumerate(read_selection(config).get("experts", []), start=1):
            rows.append([f"ThinkRec expert {number} (valid AUC on its cluster)", train["train_tokens"], "",
                         train["reasoning_examples"], train["best_valid_auc"], training_seconds(train)])
    if not rows:
        return []
    return ["## Training cost", "",
            ("Tokens seen, examples, reasoning examples, the best validation AUC and the training wall time on this "
             "2-core CPU, summed over resumed runs (checkpoints trained before that sum was kept show the last run "
             "only)."), "",
            *_table(["system", "tokens", "examples", "reasoning examples", "best valid AUC", "seconds"], rows)]


def fold_in_section(prepared: PreparedData, config: Config) -> list[str]:
    """How faithfully the Build-a-profile tab places a new user: every user folded back in from their own
    train ratings with the trained weights fixed, compared with their trained vector and scored on test."""
    test, rows = prepared.split("test"), []
    for name in FOLDED_ENCODERS:
        if not (cf_dir(config) / name / "config.json").exists():
            continue
        model, _ = load_cf_model(cf_dir(config) / name, prepared, config)
        folded = refold_users(model, prepared, prepared.summary["history_len"], config.guest.fold_in_l2)
        cosines = np.percentile(cosines_to_trained(model, prepared, folded), [0, 10, 25, 50, 75])
        refolded = auc_report(test["user"], test["label"], folded_scores(model, folded, test["user"], test["item"]))
        trained = read_json(cf_dir(config) / name / "config.json")["report"]["test"]
        rows.append([registry.label(name), *[round(c, 3) for c in cosines], trained["auc"], refolded["auc"]])
    if not rows:
        return []
    return ["## Fold-in of new users (Build a profile)", "",
            (f"Every user folded back in from their own train ratings (L2 {config.guest.fold_in_l2}, trained weights "
             "fixed): the cosine between the folded and the trained user vector, and the full-test AUC when every "
             "user is replaced by their folded self. SASRec needs no fold-in: it encodes the history itself."), "",
            *_table(["encoder", "min cosine", "p10", "p25", "median", "p75", "test AUC trained", "test AUC folded"],
                    rows)]


def paper_section() -> list[str]:
    rows = [[name, auc, uauc, PAPER_METEOR.get(name, "")] for name, (auc, uauc) in PAPER_ML1M.items()]
    return ["## Context: the paper's ML-1M figures", "",
            ("Another dataset (ML-1M), another split protocol and a backbone 60x larger (Llama-3-8B-Instruct): "
            "context, not comparable number for number."), "", *_table(["system", "AUC", "UAUC", "METEOR"], rows)]


def write_chart(predictions: pd.DataFrame, path: Path) -> None:
    subset = metrics_by_system(predictions)
    svg = grouped_bars(subset["system"].tolist(), {"AUC": subset["auc"].tolist(), "UAUC": subset["uauc"].tolist()},
                       0.4, 0.9, "Test-subset AUC and UAUC")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svg, encoding="utf-8")


def write_report(prepared: PreparedData, config: Config, path: Path) -> str:
    predictions = test_predictions(prepared, config)
    write_chart(predictions, path.parent / CHART)
    sections = [["# ThinkRec Explorer: results on MovieLens-100K", "",
                 ("Generated by `python -m thinkrec report` from the files in `checkpoints/`; every AUC, UAUC and text "
                 "metric below is recomputed from the stored predictions and generated texts.")],
                systems_section(prepared, config, predictions), fusion_section(config, predictions),
                reasoning_section(prepared, config), faithfulness_section(config), fold_in_section(prepared, config),
                cost_section(config),
                paper_section()]
    text = "\n\n".join("\n".join(section) for section in sections if section) + "\n"
    path.write_text(text, encoding="utf-8")
    return text


def write_results(prepared: PreparedData, config: Config) -> str:
    """The report stage: RESULTS.md and the analysts' workbench under checkpoints/analysis/; returns the report."""
    text = write_report(prepared, config, config.paths.results)
    write_workbench(prepared, config)
    return text

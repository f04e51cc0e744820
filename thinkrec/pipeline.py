"""Pipeline stages after the System-1 encoders: teacher traces, LLM training, LLM evaluation, the user map and
the fused evaluation (the cluster experts' own stages are in ``expert_stages``).

Each stage reads what earlier stages wrote under ``checkpoints/``, skips itself when its output
is current (unless forced), logs its wall time and refreshes the checkpoint manifest.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from thinkrec import registry
from thinkrec.cf.store import load_embeddings
from thinkrec.chunks import Chunks, Unfinished, run_chunks
from thinkrec.config import LEGACY_PROMPT, Config
from thinkrec.data.prepared import PreparedData
from thinkrec.errors import CheckpointError
from thinkrec.files import read_json, write_json
from thinkrec.fusion.experts import experts_dir, load_shipped_clustering, user_map_dir
from thinkrec.fusion.fused import load_fused
from thinkrec.fusion.user_map import JSON_FILE, fit_user_map, save_user_map
from thinkrec.llm.cpu import arithmetic
from thinkrec.llm.decoder import decode_dtype_here
from thinkrec.llm.fingerprint import job_digest
from thinkrec.llm.generate import GenerationSettings
from thinkrec.llm.score import PROBE_ROWS, Scored, ScoreSettings, bar_checked, score_job
from thinkrec.llm.systems import llm_dir, load_system, system_spec
from thinkrec.llm.train import needs_traces, train_system
from thinkrec.manifest import write_manifest
from thinkrec.metrics import auc_report
from thinkrec.reasoning_scores import (
    REFERENCES,
    answer_report,
    answers_metrics_path,
    answers_path,
    references_report,
    shown_titles,
    stored_report,
)
from thinkrec.serving.bank import load_bank
from thinkrec.serving.case import Case
from thinkrec.subsets import test_rows, valid_subset
from thinkrec.teacher.dataset import (
    load_trace_dataset,
    save_trace_dataset,
    system1_train_scores,
    trace_rows,
    write_traces,
)
from thinkrec.teacher.grounded import GroundedTeacher
from thinkrec.timebox import TimeBox

log = logging.getLogger(__name__)


def stage_traces(prepared: PreparedData, config: Config, force: bool = False) -> pd.DataFrame:
    """Grounded-teacher traces for the train rows ``llm.trace_rows`` chooses and for the reference rows."""
    path = config.traces_path
    if path.exists() and not force:
        log.info("traces: up to date in %s", path)
        return load_trace_dataset(path)
    started = time.perf_counter()
    settings = config.llm
    scores = system1_train_scores(prepared, config, settings.trace_system1)
    rows = trace_rows(prepared, scores, settings)
    teacher = GroundedTeacher(settings.seed, statements=settings.prompt_evidence_lines)
    traces = write_traces(prepared, config, teacher, rows, cf_name=settings.cf_encoder)
    save_trace_dataset(traces, path)
    write_manifest(config.paths.checkpoints)
    purposes = traces["purpose"].value_counts().to_dict()
    log.info("traces (%s rule): %s in %s (%.1f s)", settings.trace_rows, purposes, path, time.perf_counter() - started)
    return traces


def stage_train_llm(name: str, prepared: PreparedData, config: Config, force: bool = False,
                    max_minutes: float | None = None) -> dict:
    """Train (or continue training) one LLM system; a time-boxed run that ends early ships nothing yet."""
    spec = system_spec(name)
    folder = llm_dir(config, name)
    if not spec.trained:
        return {}
    if (folder / "config.json").exists() and not force:
        log.info("%s: trained model in %s", name, folder)
        return read_json(folder / "config.json")["train"]
    traces = load_trace_dataset(config.traces_path) if needs_traces(spec, config) else None
    started = time.perf_counter()
    report = train_system(spec, prepared, config, traces, max_minutes=max_minutes)
    if not report["finished"]:
        log.info("%s: %d of %d tokens trained over all runs (%.0f s); continue with the same command",
                 name, report["train_tokens"], report["planned_tokens"], report["seconds"] or 0.0)
        return report
    write_manifest(config.paths.checkpoints)
    log.info("%s: trained in %.0f s", name, time.perf_counter() - started)
    return report


def scoring_dir(config: Config, name: str) -> Path:
    """Where an evaluation of ``name`` saves its scores chunk by chunk until it finishes (under training/, which
    sessions commit, so a whole-split scoring spread over sessions continues on another machine)."""
    return config.paths.training / "eval" / "scoring" / name


PROBE_FOLDER = "probe"  # under ``scoring_dir``: the precision check's scores, so a resumed evaluation reuses them


def reasoning_dir(config: Config, name: str) -> Path:
    """Where ``stage_reasoning`` saves the answers of ``name`` chunk by chunk until it finishes (as ``scoring_dir``)."""
    return config.paths.training / "eval" / "reasoning" / name


def eval_splits(prepared: PreparedData, config: Config) -> dict[str, pd.DataFrame]:
    """The rows an evaluation scores: the test rows of ``llm.eval_scope`` and, for the whole split ("all"),
    the valid subset that models and experts are selected on."""
    splits = {"test": test_rows(prepared, config)}
    if config.llm.eval_scope == "all":
        splits["valid"] = valid_subset(prepared, config)
    return splits


def evaluated(folder: Path, config: Config) -> bool:
    """Whether ``folder`` holds predictions covering the rows ``llm.eval_scope`` asks for: the whole split covers
    the subset too, so a later run with the default scope keeps it (files written before whole-split scoring
    cover the subset)."""
    return (folder / "test_predictions.parquet").exists() and \
        read_json(folder / "metrics.json").get("scope", "subset") in (config.llm.eval_scope, "all")


def trusted_scoring(name: str, score: Callable[[ScoreSettings], np.ndarray], settings: ScoreSettings,
                    fallback_layers: int) -> tuple[ScoreSettings, dict | None]:
    """The scoring an evaluation of ``name`` runs: ``settings`` where they meet the precision bar on a probe of
    this very system, else the same with ``fallback_layers`` bfloat16 layers where those do (``score.bar_checked``),
    else fp32; and the check of the chosen setting (of the last one tried when fp32 is), as its metrics record."""
    chosen, tried = bar_checked(score, settings, fallback_layers)
    for candidate, check in tried:
        log.info("%s: bfloat16 over the first %d layers%s %s the bar on %d probe rows (max gap %.4f, verdicts "
                 "kept %.1f %%)", name, candidate.bf16_layers, ", the answer apart in fp32," if candidate.fp32_answer
                 else "", "meets" if check.passes else "misses", check.rows, check.max_gap, 100 * check.same_verdict)
    if tried:
        log.info("%s: scoring %s", name, f"with bfloat16 over the first {chosen.bf16_layers} layers"
                 if chosen.bf16_layers else "in fp32")
    return chosen, asdict(tried[-1][1]) | {"passes": tried[-1][1].passes} if tried else None


def unfinished(name: str, split: str, stop: Unfinished) -> dict:
    log.info("%s: stopped at the end of the time box, %s %s rows done; the same command continues from the saved "
             "chunks",
             name, f"{stop.done} of {stop.total}", split)
    return {"finished": False, "split": split, "scored": stop.done, "rows": stop.total}


def write_predictions(folder: Path, tables: dict[str, pd.DataFrame]) -> None:
    """``<split>_predictions.parquet`` for each scored split; a valid file the scope no longer scores goes."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, table in tables.items():
        table.to_parquet(folder / f"{split}_predictions.parquet", index=False)
    if "valid" not in tables:
        (folder / "valid_predictions.parquet").unlink(missing_ok=True)


def stage_eval_llm(name: str, prepared: PreparedData, config: Config, force: bool = False,
                   timebox: TimeBox | None = None) -> dict:
    """Score the test rows of ``llm.eval_scope`` (the whole split also scores the valid subset); store the
    predictions and their AUC / UAUC. Scores are saved chunk by chunk under ``scoring_dir``: a run stopped at the
    end of ``timebox`` or killed continues with the same command."""
    folder = llm_dir(config, name)
    if evaluated(folder, config) and not force:
        log.info("%s: test predictions in %s", name, folder)
        return read_json(folder / "metrics.json")
    started = time.perf_counter()
    model, builder = load_system(name, prepared, config)
    splits = eval_splits(prepared, config)
    probe, saved = splits["test"].head(PROBE_ROWS), scoring_dir(config, name) / PROBE_FOLDER
    settings, check = trusted_scoring(name, lambda chosen: score_job(model, builder, probe, chosen, "precision check",
                                                                     resume=saved).p_yes,
                                      ScoreSettings.from_config(config.llm), config.llm.score_bf16_fallback_layers)
    tables, metrics, scored = {}, {}, []
    for split, rows in splits.items():
        try:
            result = score_job(model, builder, rows, settings, f"{split} {name}", None,
                               scoring_dir(config, name) / split, timebox)
        except Unfinished as stop:
            return unfinished(name, split, stop)
        tables[split] = rows[["user", "item", "label"]].assign(p_yes=result.p_yes)
        metrics[split] = auc_report(rows["user"], rows["label"], result.p_yes)
        scored.append(result)
    write_predictions(folder, tables)
    metrics |= {"scope": config.llm.eval_scope, "scoring": asdict(settings), "precision_check": check,
                "arithmetic": arithmetic(), "seconds": round(time.perf_counter() - started, 1),
                "rows_per_second": rows_per_second(scored),
                "prompt": {key: getattr(builder.config, key) for key in LEGACY_PROMPT}}  # what serving renders
    write_json(folder / "metrics.json", metrics)
    shutil.rmtree(scoring_dir(config, name), ignore_errors=True)
    write_manifest(config.paths.checkpoints)
    log.info("%s: test AUC %.4f UAUC %.4f (%d rows, %.2f rows/s)", name, metrics["test"]["auc"],
             metrics["test"]["uauc"], metrics["test"]["rows"], metrics["rows_per_second"])
    return metrics


def rows_per_second(scored: list[Scored]) -> float:
    """Rows scored per second of scoring, over every run that saved a chunk of these jobs."""
    return round(sum(len(s.p_yes) for s in scored) / max(sum(s.seconds for s in scored), 1e-9), 2)


def stage_reasoning(name: str, prepared: PreparedData, config: Config, force: bool = False,
                    timebox: TimeBox | None = None, rules: bool = True) -> dict:
    """Answer the reference test rows and score the answers (``reasoning_scores.answer_report``).

    ``name`` is an LLM system or ``fused`` (ThinkRec with the gate mixing its experts per user); ``rules`` False
    decodes without the no-repeat and minimum-length rules (stored apart: ``answers_path``). Each answer is the
    one the demo streams (``LLMBank.answer``: the same adapter mixture, decoding dtype and phrasebook), so the
    demo writes the very texts the report scores: bfloat16 rounds a row apart in a batch of others. The answers
    are saved ``llm.reasoning_chunk_rows`` at a time under ``reasoning_dir``: a run stopped at the end of
    ``timebox`` or killed continues with the same call."""
    folder = registry.folder(config, name)
    out, metrics_file = answers_path(config, name, rules), answers_metrics_path(config, name, rules)
    if out.exists() and not force:
        log.info("%s: reasoning in %s", name, out)
        return read_json(metrics_file)
    references = reference_traces(config)
    bank = load_bank(prepared, config)
    if name not in bank.served:
        raise CheckpointError(f"{name}: not among the trained systems in {config.paths.checkpoints / 'llm'} "
                              f"({', '.join(bank.systems)}); train it first")
    rows, cases = reference_cases(prepared, references)
    settings = GenerationSettings.from_config(config.llm, rules=rules)
    dtype = decode_dtype_here(config.llm.decode_dtype)  # what "auto" means here, recorded with the answers

    def answer(positions: np.ndarray) -> pd.DataFrame:
        written = [bank.answer(name, cases[n], settings) for n in positions]
        return pd.DataFrame({"generated": [a.text for a in written], "p_yes": [a.p_yes for a in written],
                             "new_tokens": [a.new_tokens for a in written]})

    step = config.llm.reasoning_chunk_rows
    chunks = [np.arange(start, min(start + step, len(cases))) for start in range(0, len(cases), step)]
    decided_by = {**asdict(settings), "decode_dtype": dtype, "arithmetic": arithmetic(),
                  "phrasebook": bank.phrasebook.digest() if bank.phrasebook else None}
    job = job_digest(bank.served[name].model, [bank.prompt(name, case) for case in cases],
                     np.stack([bank.weights(name, case.user) for case in cases]), decided_by)
    work = reasoning_dir(config, name if rules else f"{name}_free")
    try:
        done = run_chunks(chunks, answer, Chunks(work / job[:16]), timebox, f"reasoning {name}")
    except Unfinished as stop:
        return unfinished(name, "reference", stop)
    allowed = [sorted(shown) for shown in shown_titles(prepared, rows)]
    answers = references[["user", "item", "label"]].assign(
        reference=references["trace"], generated=done["generated"], p_yes=done["p_yes"], allowed=allowed,
        new_tokens=done["new_tokens"])
    report = answer_report(prepared, config, answers) | {"seconds": round(float(done["seconds"].sum()), 1),
                                                          "decode_dtype": dtype, "arithmetic": arithmetic(),
                                                          "decoding_rules": rules,
                                                          "citation_guard": settings.guard_citations}
    folder.mkdir(parents=True, exist_ok=True)
    answers.to_parquet(out, index=False)
    write_json(metrics_file, report)
    shutil.rmtree(work, ignore_errors=True)
    write_manifest(config.paths.checkpoints)
    log.info("%s: reasoning on %d reference rows: %s", name, len(answers), report)
    return report


def stage_rescore_reasoning(prepared: PreparedData, config: Config, names: list[str]) -> dict[str, dict]:
    """Every reasoning measure of each named system from its stored answers, nothing generated (each
    ``reasoning_metrics.json`` rewritten); ``references`` scores the teacher's reference traces, the ceiling,
    into ``teacher/reference_metrics.json``."""
    reports = {}
    for name in names:
        if name == REFERENCES:
            reports[name] = references_report(prepared, config, reference_traces(config))
            write_json(config.traces_path.parent / "reference_metrics.json", reports[name])
        else:
            reports[name] = stored_report(prepared, config, name)
            if answers_path(config, name, rules=False).exists():
                reports[f"{name} (no decoding rules)"] = stored_report(prepared, config, name, rules=False)
    write_manifest(config.paths.checkpoints)
    return reports


def reference_traces(config: Config) -> pd.DataFrame:
    """The teacher's traces for the held-out reference test rows."""
    traces = load_trace_dataset(config.traces_path)
    return traces[traces["purpose"] == "reference"].reset_index(drop=True)


def reference_cases(prepared: PreparedData, references: pd.DataFrame) -> tuple[pd.DataFrame, list[Case]]:
    """The prepared rows (with their histories) of the reference traces, in order, and their cases."""
    keys = ["user", "item", "timestamp"]
    rows = references[keys].merge(prepared.rows, on=keys, how="left", validate="one_to_one")
    return rows, [Case(row.user, row.item, row.hist_items, row.hist_labels) for row in rows.itertuples()]


def stage_user_map(prepared: PreparedData, config: Config, force: bool = False) -> dict:
    """Fit the 2-D UMAP map of every user in the chosen clustering's space, centroids projected on it."""
    folder = user_map_dir(config)
    if (folder / JSON_FILE).exists() and not force:
        log.info("user map: up to date in %s", folder)
        return read_json(folder / JSON_FILE)
    clustering = load_shipped_clustering(config)
    vectors = load_embeddings(config, clustering.encoder)["user"].numpy()
    fusion = config.fusion
    user_map = fit_user_map(clustering.points(vectors), clustering.labels, clustering.centroids, fusion.seed,
                            fusion.umap_neighbors, fusion.umap_min_dist)
    save_user_map(user_map, folder)
    write_manifest(config.paths.checkpoints)
    log.info("user map: %d users fitted in %.1f s", len(vectors), user_map.fit_seconds)
    return read_json(folder / JSON_FILE)


def stage_eval_fused(prepared: PreparedData, config: Config, force: bool = False,
                     timebox: TimeBox | None = None) -> dict:
    """Score the test rows of ``llm.eval_scope`` (the whole split also scores the valid subset) with fused
    ThinkRec and with hard routing (the top expert alone) in one pass, beside the global adapter's stored
    scores; metrics overall and per cluster, and how often each routing branch fires. Resumable and
    time-boxed like ``stage_eval_llm``."""
    folder = experts_dir(config)
    if evaluated(folder, config) and not force:
        log.info("fused: test predictions in %s", folder)
        return read_json(folder / "metrics.json")
    started = time.perf_counter()
    splits = eval_splits(prepared, config)
    global_scores = {split: stored_global_scores(config, split, rows) for split, rows in splits.items()}
    fused = load_fused(prepared, config)
    probe = splits["test"].head(PROBE_ROWS)

    def score_probe(chosen: ScoreSettings) -> np.ndarray:
        modes, _ = replace(fused, scoring=chosen).score_modes(probe, ("fused",), "precision check",
                                                              scoring_dir(config, "fused") / PROBE_FOLDER)
        return modes["fused"]

    fused.scoring, check = trusted_scoring("fused", score_probe, fused.scoring, config.llm.score_bf16_fallback_layers)
    tables, scored = {}, []
    for split, rows in splits.items():
        try:
            modes, result = fused.score_modes(rows, ("fused", "hard"), f"{split} fused",
                                              scoring_dir(config, "fused") / split, timebox)
        except Unfinished as stop:
            return unfinished("fused", split, stop)
        users = rows["user"].to_numpy()
        tables[split] = rows[["user", "item", "label"]].assign(
            p_yes=modes["fused"], p_hard=modes["hard"], p_global=global_scores[split],
            cluster=fused.experts.clustering.labels[users],
            decision=[fused.experts.routing(int(user)).decision for user in users])
        scored.append(result)
    table = tables["test"]
    every_user = [fused.experts.routing(user).decision for user in range(prepared.n_users)]
    metrics = {"test": auc_report(table["user"], table["label"], table["p_yes"].to_numpy()),
               "modes": mode_metrics(table), "per_cluster": per_cluster_metrics(table, ["p_yes", "p_global", "p_hard"]),
               "routing_share_users": shares(every_user), "routing_share_test_rows": shares(table["decision"])}
    if "valid" in tables:
        metrics |= {"valid": auc_report(tables["valid"]["user"], tables["valid"]["label"], tables["valid"]["p_yes"]),
                    "valid_modes": mode_metrics(tables["valid"])}
    metrics |= {"scope": config.llm.eval_scope, "scoring": asdict(fused.scoring), "precision_check": check,
                "arithmetic": arithmetic(), "rows_scored": sum(len(s.p_yes) for s in scored),
                "seconds": round(time.perf_counter() - started, 1),
                "rows_per_second": rows_per_second(scored)}
    write_predictions(folder, tables)
    write_json(folder / "metrics.json", metrics)
    shutil.rmtree(scoring_dir(config, "fused"), ignore_errors=True)
    write_manifest(config.paths.checkpoints)
    log.info("fused: test AUC %.4f (global %.4f, hard %.4f)", metrics["modes"]["fused"]["auc"],
             metrics["modes"]["global"]["auc"], metrics["modes"]["hard"]["auc"])
    return metrics


def stored_global_scores(config: Config, split: str, rows: pd.DataFrame) -> np.ndarray:
    """ThinkRec-global's stored P(Yes) of ``rows`` (the fused model's global mode is that model itself)."""
    path = llm_dir(config, "thinkrec") / f"{split}_predictions.parquet"
    stored = pd.read_parquet(path) if path.exists() else None
    if stored is None or not np.array_equal(stored["user"], rows["user"]) or \
            not np.array_equal(stored["item"], rows["item"]):
        raise CheckpointError(f"{path}: missing or covering other {split} rows; score ThinkRec-global on the same rows "
                              f"first: `python -m thinkrec --force --set llm.eval_scope={config.llm.eval_scope} "
                              "eval-llm thinkrec`")
    return stored["p_yes"].to_numpy()


def mode_metrics(table: pd.DataFrame) -> dict:
    """AUC / UAUC of the fused model's three routings in a stored table."""
    return {mode: auc_report(table["user"], table["label"], table[column].to_numpy())
            for mode, column in (("fused", "p_yes"), ("global", "p_global"), ("hard", "p_hard"))}


def per_cluster_metrics(table: pd.DataFrame, columns: list[str]) -> dict:
    """AUC / UAUC of each score column within each cluster of ``table``."""
    return {str(cluster): {column: auc_report(part["user"], part["label"], part[column].to_numpy())
                           for column in columns}
            for cluster, part in table.groupby("cluster")}


def shares(values) -> dict[str, float]:
    counts = pd.Series(list(values)).value_counts(normalize=True)
    return {str(key): round(float(share), 4) for key, share in counts.items()}

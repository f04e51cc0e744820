"""The "Analyse" tab's handlers: AUC per slice with intervals, calibration, disagreements and confusion,
and the table of every stored prediction (filters, CSV export), over the backend's workbench
(``thinkrec.workbench``: one row per prediction with ids, title, truth, slice attributes and a P(like)
column per system, keys as in ``thinkrec.registry``). The curated Explore cases come from
the same predictions (``Explorer.case_table()``).
"""

from __future__ import annotations

import html
import logging
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from demo.charts import reliability_chart, slice_auc_chart
from thinkrec import registry
from thinkrec.explorer import Explorer
from thinkrec.workbench import (
    SLICES,
    Workbench,
    calibration_errors,
    calibration_table,
    confusion,
    disagreements,
    in_slice,
    system1_models,
)

log = logging.getLogger(__name__)
# Shown words, not Gradio's translation keys ("errors" is one): the frontend would look them up.
SHOW = ("all cases", "wrong answers", "right answers", "disagreements")
ID_COLUMNS = ["user_id", "item_id", "title", "liked", "cluster"]
DECIMALS = 3
ALL = "all"
DEFAULT_SLICE = "activity"
SLICE_COLUMNS = ["slice value", "system", "rows", "users", "AUC", "low", "high", "like-rate", "mean P(like)"]
ECE_COLUMNS = ["system", "ECE", "rows"]
CONFUSION_COLUMNS = ["system", "said yes, liked", "said yes, not liked", "said no, liked", "said no, not liked",
                     "accuracy", "precision", "recall"]


def scored_systems(table: pd.DataFrame) -> list[str]:
    llms = registry.keys(registry.LLM, registry.FUSED)[::-1]  # the most complete ThinkRec first
    return [s for s in (*llms, *registry.keys(registry.SYSTEM_1)) if s in table.columns]


def default_pair(table: pd.DataFrame) -> tuple[str | None, str | None]:
    """The system analysts look at first (the most complete ThinkRec there is) and its System-1 rival."""
    systems = scored_systems(table)
    main = next((s for s in registry.keys(registry.LLM, registry.FUSED)[::-1] if s in systems),
                systems[0] if systems else None)
    rival = next((s for s in ("lightgcn", "mf", "sasrec") if s in systems and s != main), None)
    return main, rival


def default_systems(table: pd.DataFrame) -> list[str]:
    """The chart's first systems: the main pair, ThinkRec-global and CoLLM-style, where scored."""
    main, rival = default_pair(table)
    return [s for s in dict.fromkeys([main, "thinkrec", "collm", rival]) if s in scored_systems(table)]


def slice_choices(workbench: Workbench) -> list[tuple[str, str]]:
    return [(SLICES[key], key) for key in workbench.slice_keys]


def slice_value_choices(workbench: Workbench, key: str | None) -> list[str]:
    return [ALL, *workbench.slice_values(key)] if key in workbench.slice_keys else [ALL]


def rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """Probabilities and metrics to three decimals, numbers still (so the table sorts by value)."""
    return frame.round({c: DECIMALS for c in frame.columns if pd.api.types.is_float_dtype(frame[c])})


def shown_text(frame: pd.DataFrame) -> pd.DataFrame:
    """List cells (a movie's genres) as readable text."""
    return frame.assign(**{c: frame[c].map(", ".join) for c in frame.columns
                           if len(frame) and isinstance(frame[c].iloc[0], list)})


# ---- the cases table ------------------------------------------------------------------------------
def filter_cases(table: pd.DataFrame, system: str, rival: str | None, show: str, min_confidence: float,
                 slice_key: str | None = None, slice_value: str | None = None) -> pd.DataFrame:
    """The cases matching the filters, with the chosen systems' P(like) and verdict correctness.

    ``show``: all cases, wrong / right answers of ``system``, or cases where ``system`` and
    ``rival`` give different verdicts. ``min_confidence`` (0..1) keeps cases where ``system`` is at
    least that sure: |2 P(like) - 1| >= min_confidence. ``slice_key`` and ``slice_value`` keep one
    slice value (a genre keeps every movie of that genre); "all" or None keeps every row. The rows come
    surest first (|2 P(like) - 1| of ``system``, then in stored order), so confidently wrong answers lead.
    """
    if show not in SHOW:
        raise ValueError(f"show must be one of {', '.join(SHOW)}, not {show!r}")
    if system not in table.columns or (rival is not None and rival not in table.columns):
        raise ValueError(f"no stored predictions for {system if system not in table.columns else rival!r}")
    if slice_key and slice_key not in table.columns:
        raise ValueError(f"unknown slice {slice_key!r}; choose from {', '.join(k for k in SLICES if k in table)}")
    verdict = table[system] > 0.5
    keep = np.abs(2 * table[system] - 1) >= min_confidence
    if show == "wrong answers":
        keep &= verdict != table["liked"]
    elif show == "right answers":
        keep &= verdict == table["liked"]
    elif show == "disagreements" and rival is not None:
        keep &= verdict != (table[rival] > 0.5)
    if slice_key and slice_value not in (None, "", ALL):
        keep &= in_slice(table, slice_key, slice_value)
    ids = [c for c in ID_COLUMNS if c in table.columns]
    extra = [slice_key] if slice_key and slice_key not in ids else []
    columns = ids + extra + [system] + ([rival] if rival and rival != system else [])
    kept = table.loc[keep, columns]
    kept = kept.iloc[np.argsort(-np.abs(2 * kept[system].to_numpy() - 1), kind="stable")]
    shown = shown_text(kept)
    shown[f"{system} right"] = (shown[system] > 0.5) == shown["liked"]
    shown = shown.rename(columns={s: f"P(like) {registry.label(s)}" for s in (system, rival) if s})
    return rounded(shown).reset_index(drop=True)


def refresh_cases(explorer: Explorer, system: str | None, rival: str | None, show: str, slice_key: str | None,
                  slice_value: str | None, min_confidence: float):
    """The analysts' table for the current filters (at most ``analysis.cases_shown`` rows, the system's surest),
    its CSV file (every matching row) and a one-line summary."""
    workbench = explorer.workbench
    if workbench is None or not system:
        return pd.DataFrame(columns=ID_COLUMNS), None, "No stored test predictions to analyse yet."
    table = workbench.rows
    try:
        shown = filter_cases(table, system, rival or None, show, float(min_confidence), slice_key, slice_value)
    except (TypeError, ValueError) as err:
        log.warning("refresh_cases: %s", err)
        return pd.DataFrame(columns=ID_COLUMNS), None, f"**Cannot filter:** {html.escape(str(err))}"
    right = shown.iloc[:, -1].mean() if len(shown) else float("nan")
    note = f"{len(shown)} of {len(table)} cases" + (f" · {right:.0%} answered right" if len(shown) else "")
    limit = explorer.config.analysis.cases_shown
    if len(shown) > limit:
        note += f" · shown: the {limit} {registry.label(system)} is surest of; the CSV holds all {len(shown)}"
    return shown.head(limit), str(export_csv(shown)), note


# ---- slices -----------------------------------------------------------------------------------------
def slice_table(workbench: Workbench, key: str, systems: list[str]) -> pd.DataFrame:
    """The slice's metrics for the chosen systems, one row per value and system, as the table shows them."""
    frame = workbench.slices[(workbench.slices["slice"] == key) & workbench.slices["system"].isin(systems)]
    frame = frame.assign(rank=frame["system"].map(systems.index)).sort_values(["order", "rank"])
    shown = pd.DataFrame({"slice value": frame["value"], "system": frame["system"].map(registry.label),
                          "rows": frame["rows"], "users": frame["users"], "AUC": frame["auc"], "low": frame["auc_low"],
                          "high": frame["auc_high"], "like-rate": frame["like_rate"], "mean P(like)": frame["mean_p"]})
    return rounded(shown).reset_index(drop=True)


def slice_values(explorer: Explorer, key: str | None):
    """The value filter for a newly chosen slice: its values, "all" selected."""
    workbench = explorer.workbench
    return gr.update(choices=[ALL] if workbench is None else slice_value_choices(workbench, key), value=ALL)


def show_slice(explorer: Explorer, key: str | None, systems: list[str] | None):
    """The AUC-per-slice chart, its table and a note, for the chosen slice and systems."""
    workbench = explorer.workbench
    systems = [s for s in systems or [] if workbench is not None and s in workbench.systems]
    if workbench is None or key not in workbench.slice_keys or not systems:
        note = "Pick a slice and at least one system." if workbench is not None else "No stored predictions yet."
        return None, pd.DataFrame(columns=SLICE_COLUMNS), note
    metrics = workbench.slices[(workbench.slices["slice"] == key) & workbench.slices["system"].isin(systems)]
    note = (f"{len(workbench.slice_values(key))} values of {SLICES[key]} · each interval resamples that value's "
            f"users {workbench.summary['settings']['resamples']} times")
    return slice_auc_chart(metrics, systems, registry.label, SLICES[key]), slice_table(workbench, key, systems), note


# ---- calibration ----------------------------------------------------------------------------------
def show_calibration(explorer: Explorer, systems: list[str] | None, key: str | None, value: str | None):
    """The reliability diagram and each system's ECE, on every row or on the chosen slice value."""
    workbench = explorer.workbench
    systems = [s for s in systems or [] if workbench is not None and s in workbench.systems]
    if workbench is None or not systems:
        return None, pd.DataFrame(columns=ECE_COLUMNS)
    bins = workbench.summary["settings"]["calibration_bins"]
    try:
        rows = workbench.rows_in(key, value)
    except ValueError as err:
        log.warning("show_calibration: %s", err)
        return None, pd.DataFrame(columns=ECE_COLUMNS)
    if rows is workbench.rows:  # every row: precomputed by the report stage
        bins_table = workbench.calibration[workbench.calibration["system"].isin(systems)]
        errors = {s: workbench.summary["ece"][s] for s in systems}
    else:
        bins_table, errors = calibration_table(rows, systems, bins), calibration_errors(rows, systems, bins)
    table = pd.DataFrame({"system": [registry.label(s) for s in systems], "ECE": [errors[s] for s in systems],
                          "rows": len(rows)})
    return reliability_chart(bins_table, systems, errors, registry.label), rounded(table)


# ---- disagreements and confusion -----------------------------------------------------------------
def show_disagreements(explorer: Explorer, system: str | None, rival: str | None, threshold: float,
                       key: str | None, value: str | None):
    """The confusion table of both systems at ``threshold`` and the rows where they differ most, on the slice."""
    workbench = explorer.workbench
    empty = pd.DataFrame(columns=CONFUSION_COLUMNS), pd.DataFrame(columns=ID_COLUMNS[:4])
    if workbench is None or not system or not rival:
        return (*empty, "Pick an LLM and a System-1 model.")
    try:
        rows = workbench.rows_in(key, value)
        table = disagreements(rows, system, rival, explorer.config.analysis.disagreements)
        counts = [confusion(rows["liked"], rows[s], float(threshold)) for s in (system, rival)]
    except (TypeError, ValueError) as err:
        log.warning("show_disagreements: %s", err)
        return (*empty, f"**Cannot compare:** {html.escape(str(err))}")
    name, rival_name = registry.label(system), registry.label(rival)
    matrix = pd.DataFrame([[registry.label(s), c["tp"], c["fp"], c["fn"], c["tn"], c["accuracy"], c["precision"],
                            c["recall"]] for s, c in zip((system, rival), counts)], columns=CONFUSION_COLUMNS)
    who = {system: name, rival: rival_name, "both": "both", "neither": "neither"}
    table = table.assign(right=table["right"].map(who)).rename(
        columns={system: f"P(like) {name}", rival: f"P(like) {rival_name}", "right": "who was right"})
    wins = (table["who was right"] == name).sum(), (table["who was right"] == rival_name).sum()
    note = (f"The {len(table)} of {len(rows)} rows where they differ most: {name} right alone on {wins[0]}, "
            f"{rival_name} alone on {wins[1]} (verdict: P(like) > 0.5). Click a row to open it in Explore.")
    return rounded(matrix), rounded(table), note


def llm_and_system1(workbench: Workbench) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Dropdown entries of the LLM systems and the System-1 models the workbench holds."""
    llms = [(registry.label(s), s) for s in registry.keys(registry.LLM, registry.FUSED)[::-1] if s in workbench.systems]
    system1 = [(registry.label(s), s) for s in (*system1_models(), *registry.keys(registry.SYSTEM_1))
               if s in workbench.systems]
    system1 = list(dict.fromkeys(system1))  # the models first, then the floor
    return llms, system1


# ---- overall results --------------------------------------------------------------------------------
def overall_table(workbench: Workbench) -> pd.DataFrame:
    """AUC / UAUC of every system with intervals and the paired AUC difference to the best System-1 model."""
    overall, reference = workbench.overall, workbench.summary["reference"]
    shown = pd.DataFrame({"system": overall["key"].map(registry.label), "AUC": overall["auc"],
                          "AUC low": overall["auc_low"], "AUC high": overall["auc_high"], "UAUC": overall["uauc"],
                          "UAUC low": overall["uauc_low"], "UAUC high": overall["uauc_high"]})
    if reference:
        name = registry.label(reference)
        shown[f"AUC − {name}"] = overall["auc_diff"]
        shown["difference low"], shown["difference high"] = overall["auc_diff_low"], overall["auc_diff_high"]
        shown[f"vs {name}"] = np.where(overall["key"] == reference, "reference", overall["verdict"])
    return rounded(shown)


# ---- curated cases and export ------------------------------------------------------------------------
def curated_cases(table: pd.DataFrame, per_kind: int = 2) -> list[tuple[str, str]]:
    """Example cases worth a stakeholder's look: clear hits, disagreements with System-1 both ways,
    and ThinkRec's most confident mistakes. Values are ``"<user_id>|<item_id>"``."""
    main, rival = default_pair(table)
    if main is None or table.empty:
        return []
    right = (table[main] > 0.5) == table["liked"]
    confidence = np.abs(2 * table[main] - 1)
    kinds = [("Clear hit", right)]
    if rival is not None:
        rival_right = (table[rival] > 0.5) == table["liked"]
        kinds += [(f"{registry.label(main)} right, {registry.label(rival)} wrong", right & ~rival_right),
                  (f"{registry.label(rival)} right, {registry.label(main)} wrong", ~right & rival_right)]
    kinds.append(("Instructive error", ~right))
    cases, seen = [], set()
    for kind, mask in kinds:
        ranked = table[mask].assign(confidence=confidence[mask]).sort_values("confidence", ascending=False)
        taken = 0
        for row in ranked.itertuples():
            key = f"{row.user_id}|{row.item_id}"
            if taken == per_kind:
                break
            if key in seen:
                continue
            seen.add(key)
            taken += 1
            verdict = "liked" if row.liked else "did not like"
            cases.append((f"{kind}: user {row.user_id}, {row.title} ({verdict})", key))
    return cases


def export_csv(frame: pd.DataFrame, folder: Path | None = None) -> Path:
    """Write the current filter's rows to a new CSV file (formula-safe) and return its path."""
    folder = Path(folder or tempfile.gettempdir())
    handle = tempfile.NamedTemporaryFile("w", suffix=".csv", prefix="thinkrec-cases-", dir=folder, delete=False,
                                         encoding="utf-8", newline="")
    with handle:
        frame.map(defuse_formula).to_csv(handle, index=False)
    return Path(handle.name)


def defuse_formula(value):
    """Text a spreadsheet would run as a formula (=, +, -, @ first) is prefixed with a quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value

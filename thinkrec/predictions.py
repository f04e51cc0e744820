"""Every system's stored test predictions, side by side, on the test rows the LLM systems are scored on.

One table serves the analysts' tab, the curated example cases and the results report: one row
per (user, item) of those rows (the fixed subset, or the whole test split), the true label, and a
P(like) column per system that has been scored (System-1 from ``cf/predictions.parquet``, each LLM
from its ``test_predictions.parquet``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from thinkrec import registry
from thinkrec.cf.store import predictions_file
from thinkrec.config import Config
from thinkrec.data.prepared import PreparedData
from thinkrec.errors import CheckpointError
from thinkrec.metrics import auc_report
from thinkrec.subsets import test_subset

log = logging.getLogger(__name__)
KEYS = ["user", "item"]


def prediction_file(config: Config, system: str) -> Path:
    return registry.folder(config, system) / "test_predictions.parquet"


def scored_test_metrics(metrics: dict) -> dict:
    """AUC / UAUC / rows of the stored test predictions from a system's ``metrics.json`` (files written before
    whole-split scoring keep them under ``test_subset``)."""
    return metrics["test"] if "test" in metrics else metrics["test_subset"]


def test_predictions(prepared: PreparedData, config: Config) -> pd.DataFrame:
    """user, item, label, then one P(like) column per scored system, in the registry's order, on the test rows
    every stored LLM prediction file covers: the fixed subset, or the whole test split once every LLM system
    is scored on it (``llm.eval_scope`` = "all"). Without stored LLM predictions: the subset's rows."""
    stored = pd.read_parquet(predictions_file(config))
    stored = stored[stored["split"] == "test"]
    system_1 = [c for c in registry.keys(registry.SYSTEM_1) if c in stored]
    frames = {system: pd.read_parquet(path) for system in registry.keys(registry.LLM, registry.FUSED)
              if (path := prediction_file(config, system)).exists()}
    rows = common_rows(config, frames) if frames else test_subset(prepared, config)[[*KEYS, "label"]]
    table = rows.reset_index(drop=True).merge(stored[[*KEYS, "label", *system_1]].rename(columns={"label": "truth"}),
                                              on=KEYS, how="left", validate="one_to_one")
    if table["truth"].isna().any() or not (table["truth"] == table["label"]).all():
        raise CheckpointError("the stored LLM predictions hold rows that are not test rows of the prepared data, or "
                              "other labels; rescore them with `python -m thinkrec --force eval-llm ...`")
    table = table.drop(columns="truth")
    for system, frame in frames.items():
        table[system] = table[KEYS].merge(frame[[*KEYS, "p_yes"]], on=KEYS, how="left")["p_yes"].to_numpy()
    missing = [c for c in table.columns if table[c].isna().any()]
    if missing:
        raise CheckpointError(f"the stored predictions lack some test rows for {missing}")
    return table


def common_rows(config: Config, frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The (user, item, label) rows every frame holds, in the first frame's order; a warning names the systems
    scored on more rows than the others, whose extra rows the table leaves out."""
    rows = None
    for frame in frames.values():
        if frame.duplicated(KEYS).any():
            raise CheckpointError("a stored prediction file holds a (user, item) row twice")
        rows = frame[[*KEYS, "label"]] if rows is None else rows.merge(frame[KEYS], on=KEYS, how="inner")
    larger = [registry.label(s) for s, frame in frames.items() if len(frame) > len(rows)]
    if larger:
        log.warning("%s scored on more test rows than the other LLM systems: the table keeps the %d rows every "
                    "system covers; score the others on the same rows (`python -m thinkrec --force --set "
                    "llm.eval_scope=%s eval-llm ...`, then eval-fused)", ", ".join(larger), len(rows),
                    config.llm.eval_scope)
    return rows


def systems_in(table: pd.DataFrame) -> list[str]:
    return [c for c in registry.keys() if c in table.columns]


def metrics_by_system(table: pd.DataFrame) -> pd.DataFrame:
    """AUC / UAUC of every system column of ``table``."""
    reports = [{"system": registry.label(s), "key": s,
                **auc_report(table["user"], table["label"], table[s].to_numpy())} for s in systems_in(table)]
    return pd.DataFrame(reports, columns=["system", "key", "auc", "uauc", "rows"])


def metrics_by_cluster(table: pd.DataFrame, clusters: np.ndarray) -> pd.DataFrame:
    """AUC of every system within each cluster (``clusters`` maps user index -> cluster)."""
    labelled = table.assign(cluster=np.asarray(clusters)[table["user"].to_numpy()])
    rows = []
    for cluster, part in labelled.groupby("cluster"):
        for system in systems_in(table):
            report = auc_report(part["user"], part["label"], part[system].to_numpy())
            rows.append({"cluster": int(cluster) + 1, "system": registry.label(system), **report})
    return pd.DataFrame(rows, columns=["cluster", "system", "auc", "uauc", "rows"])

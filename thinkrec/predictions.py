"""Every system's stored test predictions on the fixed LLM test subset, side by side.

One table serves the analysts' tab, the curated example cases and the results report: one row
per (user, item) of the subset, the true label, and a P(like) column per system that has been
scored (System-1 from ``cf/predictions.parquet``, each LLM from its ``test_predictions.parquet``).
"""

from __future__ import annotations

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


def prediction_file(config: Config, system: str) -> Path:
    return registry.folder(config, system) / "test_predictions.parquet"


def test_predictions(prepared: PreparedData, config: Config) -> pd.DataFrame:
    """user, item, label, then one P(like) column per scored system, in the registry's order."""
    rows = test_subset(prepared, config)[["user", "item", "label"]].reset_index(drop=True)
    stored = pd.read_parquet(predictions_file(config))
    stored = stored[stored["split"] == "test"]
    system_1 = [c for c in registry.keys(registry.SYSTEM_1) if c in stored]
    table = rows.merge(stored[["user", "item", *system_1]], on=["user", "item"], how="left", validate="one_to_one")
    for system in registry.keys(registry.LLM, registry.FUSED):
        path = prediction_file(config, system)
        if not path.exists():
            continue
        frame = pd.read_parquet(path)
        if len(frame) != len(rows) or not np.array_equal(frame["user"], rows["user"]) \
                or not np.array_equal(frame["item"], rows["item"]):
            stage = "eval-fused" if registry.system(system).kind == registry.FUSED else "eval-llm"
            raise CheckpointError(f"{path}: covers other rows than the test subset; rescore with "
                                  f"`python -m thinkrec --force {stage}`")
        table[system] = frame["p_yes"].to_numpy()
    missing = [c for c in table.columns if table[c].isna().any()]
    if missing:
        raise CheckpointError(f"the stored predictions lack some test-subset rows for {missing}")
    return table


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

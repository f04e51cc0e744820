"""The analysts' workbench: every stored prediction row with what it can be sliced by, metrics per slice
with user-bootstrap intervals, calibration, disagreements and confusion tables.

It works on any set of (user, item, label, one P(like) column per system) rows, whether the fixed
test subset or a whole split. ``write_workbench`` (run by ``python -m thinkrec report``) stores it
under ``checkpoints/analysis/`` so the app starts without recomputing it:

    rows.parquet         one row per prediction: ids, title, truth, slice attributes, P(like) per system
    overall.parquet      AUC / UAUC per system with intervals and the paired difference to the best System-1 model
    slices.parquet       per slice value and system: rows, users, AUC and its interval, like-rate, mean P(like)
    calibration.parquet  reliability-diagram bins per system
    workbench.json       settings, the reference model, each system's ECE and the rows' fingerprint

Disagreements and confusion tables depend on choices made in the app, and are cheap: computed there.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from thinkrec import registry
from thinkrec.config import AnalysisConfig, Config
from thinkrec.data.prepared import PreparedData
from thinkrec.errors import CheckpointError
from thinkrec.files import read_json, write_json
from thinkrec.fusion.experts import Experts, has_experts, load_experts
from thinkrec.intervals import UserBootstrap, system_intervals
from thinkrec.manifest import write_manifest
from thinkrec.metrics import auc
from thinkrec.predictions import systems_in, test_predictions

log = logging.getLogger(__name__)
FOLDER = "analysis"
FRAMES = ("rows", "overall", "slices", "calibration")
SUMMARY = "workbench.json"
SLICES = {"cluster": "user cluster", "activity": "user activity (train ratings)",
          "popularity": "item popularity (train ratings)", "genre": "genre", "age": "age band", "gender": "gender",
          "occupation": "occupation", "routing": "gate's routing branch"}
ROUTING_ORDER = ("single", "fused", "global")
ID_COLUMNS = ("user_id", "item_id", "title", "liked")


@dataclass
class Workbench:
    """The precomputed tables of the analysts' tab (see the module docstring for their columns)."""

    rows: pd.DataFrame
    overall: pd.DataFrame
    slices: pd.DataFrame
    calibration: pd.DataFrame
    summary: dict

    @property
    def systems(self) -> list[str]:
        return list(self.summary["systems"])

    @property
    def slice_keys(self) -> list[str]:
        return list(self.summary["slices"])

    def slice_values(self, key: str) -> list[str]:
        """The values of one slice in their natural order (bins low to high)."""
        frame = self.slices[self.slices["slice"] == key]
        return list(dict.fromkeys(frame.sort_values("order")["value"]))

    def rows_in(self, key: str | None, value: str | None) -> pd.DataFrame:
        """The rows of one slice value (all rows when ``key`` or ``value`` is empty or "all")."""
        if not key or value in (None, "", "all"):
            return self.rows
        if key not in self.slice_keys:
            raise ValueError(f"unknown slice {key!r}; choose from {', '.join(self.slice_keys)}")
        return self.rows[in_slice(self.rows, key, value)]


def in_slice(rows: pd.DataFrame, key: str, value: str) -> np.ndarray:
    """Which rows hold ``value`` in slice ``key`` (a genre slice matches any of the item's genres)."""
    if key == "genre":
        return np.array([value in genres for genres in rows["genre"]], dtype=bool)
    return (rows[key].astype(str) == str(value)).to_numpy()


# ---- slice attributes -------------------------------------------------------------------------------
def bin_labels(edges: tuple[int, ...]) -> list[str]:
    """Readable names of the integer bins that ``edges`` cut: "< 25", "25-49", ..., "200+"."""
    if not edges or list(edges) != sorted(set(edges)):
        raise ValueError(f"bin edges must be increasing and distinct, got {edges}")
    return [f"< {edges[0]}", *[f"{a}-{b - 1}" for a, b in zip(edges[:-1], edges[1:])], f"{edges[-1]}+"]


def binned(values: np.ndarray, edges: tuple[int, ...]) -> pd.Categorical:
    """Each value's bin (``bin_labels``), ordered low to high."""
    labels = bin_labels(edges)
    codes = np.searchsorted(np.asarray(edges), np.asarray(values), side="right")
    return pd.Categorical.from_codes(codes, categories=labels, ordered=True)


def age_bands(ages: pd.Series, edges: tuple[int, ...]) -> pd.Categorical:
    """Age bands ("under 18", "18-24", ..., "56+"); an age that is not a number is "unknown"."""
    numbers = pd.to_numeric(ages, errors="coerce").to_numpy()
    labels = [f"under {edges[0]}", *bin_labels(edges)[1:], "unknown"]
    codes = np.where(np.isnan(numbers), len(labels) - 1,
                     np.searchsorted(np.asarray(edges), np.nan_to_num(numbers), side="right"))
    return pd.Categorical.from_codes(codes, categories=labels, ordered=True)


def routing_branches(experts: Experts) -> np.ndarray:
    """The gate's decision (single / fused / global) for every user, from their CF vector."""
    return np.array([experts.routing(user).decision for user in range(len(experts.user_vectors))])


def row_table(predictions: pd.DataFrame, prepared: PreparedData, settings: AnalysisConfig,
              clusters: np.ndarray | None = None, routes: np.ndarray | None = None) -> pd.DataFrame:
    """The prediction rows with ids, title, truth and every slice attribute, then one P(like) column per system.

    ``clusters`` (0-based) and ``routes`` map a user index to their cluster and the gate's branch;
    without them those slices are left out, as are user features the dataset does not have."""
    users, items = predictions["user"].to_numpy(), predictions["item"].to_numpy()
    people, catalogue = prepared.users, prepared.items
    train = prepared.rows[prepared.rows["split"] == "train"]
    popularity = np.bincount(train["item"].to_numpy(), minlength=prepared.n_items)
    table = pd.DataFrame({"user_id": people["user_id"].to_numpy()[users],
                          "item_id": catalogue["item_id"].to_numpy()[items],
                          "title": catalogue["title"].to_numpy()[items],
                          "liked": predictions["label"].to_numpy().astype(bool)})
    if clusters is not None:
        table["cluster"] = (np.asarray(clusters)[users] + 1).astype(str)
    table["activity"] = binned(people["n_train"].to_numpy()[users], settings.activity_edges)
    table["popularity"] = binned(popularity[items], settings.popularity_edges)
    table["genre"] = [list(genres) for genres in catalogue["genres"].to_numpy()[items]]
    if "age" in people:
        table["age"] = age_bands(people["age"].iloc[users].reset_index(drop=True), settings.age_edges)
    for feature in ("gender", "occupation"):
        if feature in people:
            table[feature] = people[feature].astype(str).to_numpy()[users]
    if routes is not None:
        table["routing"] = pd.Categorical(np.asarray(routes)[users], categories=ROUTING_ORDER, ordered=True)
    for system in systems_in(predictions):
        table[system] = predictions[system].to_numpy(dtype=float)
    return table


def slice_keys_of(rows: pd.DataFrame) -> list[str]:
    return [key for key in SLICES if key in rows.columns]


def slice_groups(rows: pd.DataFrame, key: str) -> list[tuple[str, np.ndarray]]:
    """(value, row mask) for every value of a slice, in its natural order."""
    if key == "genre":
        values = sorted({genre for genres in rows["genre"] for genre in genres})
    elif isinstance(rows[key].dtype, pd.CategoricalDtype):
        values = [str(v) for v in rows[key].cat.categories if (rows[key] == v).any()]
    else:  # numbers (clusters) by value, words alphabetically
        values = sorted(rows[key].astype(str).unique(), key=lambda v: (0, int(v), "") if v.isdigit() else (1, 0, v))
    return [(value, in_slice(rows, key, value)) for value in values]


# ---- metrics per slice ----------------------------------------------------------------------------
def slice_metrics(rows: pd.DataFrame, systems: list[str], keys: list[str], settings: AnalysisConfig) -> pd.DataFrame:
    """For every slice value and system: rows, users, AUC with its user-bootstrap interval, like-rate and
    mean P(like). All systems of one slice value share one set of resampled users."""
    records = []
    for key in keys:
        for order, (value, mask) in enumerate(slice_groups(rows, key)):
            part = rows[mask]
            labels = part["liked"].to_numpy().astype(int)
            bootstrap = UserBootstrap(part["user_id"].to_numpy(), settings.resamples, settings.seed,
                                      settings.confidence)
            for system in systems:
                scores = part[system].to_numpy(dtype=float)
                interval = bootstrap.interval(auc(labels, scores), bootstrap.aucs(labels, scores))
                records.append({"slice": key, "value": value, "order": order, "system": system, "rows": len(part),
                                "users": bootstrap.users, "auc": interval.estimate, "auc_low": interval.low,
                                "auc_high": interval.high, "like_rate": float(labels.mean()),
                                "mean_p": float(scores.mean())})
    return pd.DataFrame(records, columns=["slice", "value", "order", "system", "rows", "users", "auc", "auc_low",
                                          "auc_high", "like_rate", "mean_p"])


# ---- calibration ----------------------------------------------------------------------------------
def reliability_bins(labels: np.ndarray, scores: np.ndarray, bins: int) -> pd.DataFrame:
    """Equal-width P(like) bins over [0, 1] (1.0 falls in the last): rows, mean P(like) and like-rate of each.
    An empty bin has 0 rows and NaN means."""
    if bins < 1:
        raise ValueError(f"calibration needs at least one bin, got {bins}")
    labels, scores = np.asarray(labels, dtype=float), np.asarray(scores, dtype=float)
    which = np.clip((scores * bins).astype(int), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(which, weights=scores, minlength=bins) / counts
        like_rate = np.bincount(which, weights=labels, minlength=bins) / counts
    edges = np.linspace(0, 1, bins + 1)
    return pd.DataFrame({"bin": np.arange(bins), "low": edges[:-1], "high": edges[1:], "rows": counts,
                         "mean_p": mean_p, "like_rate": like_rate})


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray, bins: int) -> float:
    """ECE: the row-weighted mean gap |mean P(like) - like-rate| over the reliability bins; NaN without rows."""
    table = reliability_bins(labels, scores, bins)
    filled = table[table["rows"] > 0]
    if filled.empty:
        return math.nan
    return float((filled["rows"] * (filled["mean_p"] - filled["like_rate"]).abs()).sum() / filled["rows"].sum())


def calibration_table(rows: pd.DataFrame, systems: list[str], bins: int) -> pd.DataFrame:
    """``reliability_bins`` of every system, stacked with a ``system`` column."""
    labels = rows["liked"].to_numpy()
    frames = [reliability_bins(labels, rows[s].to_numpy(), bins).assign(system=s) for s in systems]
    columns = ["system", "bin", "low", "high", "rows", "mean_p", "like_rate"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def calibration_errors(rows: pd.DataFrame, systems: list[str], bins: int) -> dict[str, float]:
    labels = rows["liked"].to_numpy()
    return {s: expected_calibration_error(labels, rows[s].to_numpy(), bins) for s in systems}


# ---- choices made in the app ------------------------------------------------------------------------
def disagreements(rows: pd.DataFrame, system: str, rival: str, limit: int) -> pd.DataFrame:
    """The rows where ``system`` and ``rival`` differ most in P(like), largest gap first, with who was right
    at the 0.5 verdict: the system's key, the rival's, "both" or "neither"."""
    for name in (system, rival):
        if name not in rows.columns:
            raise ValueError(f"no stored predictions for {name!r}")
    gap = (rows[system] - rows[rival]).abs()
    top = rows.assign(gap=gap).sort_values("gap", ascending=False, kind="stable").head(limit)
    system_right = (top[system] > 0.5) == top["liked"]
    rival_right = (top[rival] > 0.5) == top["liked"]
    right = np.select([system_right & rival_right, system_right, rival_right], ["both", system, rival], "neither")
    return top[[*ID_COLUMNS, system, rival, "gap"]].assign(right=right).reset_index(drop=True)


def confusion(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Counts of a verdict P(like) > ``threshold`` against the truth, with accuracy, precision and recall."""
    if not 0 <= threshold <= 1:
        raise ValueError(f"the threshold must lie between 0 and 1, got {threshold}")
    truth, said = np.asarray(labels).astype(bool), np.asarray(scores, dtype=float) > threshold
    tp, fp = int((said & truth).sum()), int((said & ~truth).sum())
    fn, tn = int((~said & truth).sum()), int((~said & ~truth).sum())
    total = tp + fp + fn + tn
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "accuracy": (tp + tn) / total if total else math.nan,
            "precision": tp / (tp + fp) if tp + fp else math.nan,
            "recall": tp / (tp + fn) if tp + fn else math.nan}


# ---- the whole workbench --------------------------------------------------------------------------
def system1_models() -> list[str]:
    """The System-1 models the paper's claim is held against (the item like-rate floor is not one)."""
    return [s.key for s in registry.SYSTEMS if s.kind == registry.SYSTEM_1 and s.baseline]


def reference_system(predictions: pd.DataFrame) -> str | None:
    """The best System-1 model (the floor excluded) by AUC on the prediction rows; None when none was scored."""
    scored = [s for s in system1_models() if s in predictions.columns]
    if not scored:
        return None
    return max(scored, key=lambda s: auc(predictions["label"].to_numpy(), predictions[s].to_numpy()))


def fingerprint(predictions: pd.DataFrame) -> str:
    """sha256 of the rows and every system's P(like): a stored workbench is current when it matches."""
    digest = hashlib.sha256()
    for column in ["user", "item", "label", *systems_in(predictions)]:
        digest.update(column.encode())
        digest.update(np.ascontiguousarray(predictions[column].to_numpy(dtype=float)).tobytes())
    return digest.hexdigest()


def build_workbench(predictions: pd.DataFrame, prepared: PreparedData, settings: AnalysisConfig,
                    clusters: np.ndarray | None = None, routes: np.ndarray | None = None) -> Workbench:
    """Every table of the workbench from the prediction rows (user, item, label, P(like) per system)."""
    systems = systems_in(predictions)
    rows = row_table(predictions, prepared, settings, clusters, routes)
    reference = reference_system(predictions)
    overall = system_intervals(predictions, systems, reference, settings.resamples, settings.seed,
                               settings.confidence) if systems else pd.DataFrame(columns=["key"])
    keys = slice_keys_of(rows)
    summary = {"systems": systems, "reference": reference, "slices": keys,
               "slice_labels": {k: SLICES[k] for k in keys}, "rows": len(rows),
               "users": int(rows["user_id"].nunique()),
               "ece": calibration_errors(rows, systems, settings.calibration_bins),
               "settings": {"resamples": settings.resamples, "confidence": settings.confidence,
                            "seed": settings.seed, "calibration_bins": settings.calibration_bins},
               "fingerprint": fingerprint(predictions)}
    return Workbench(rows=rows, overall=overall, slices=slice_metrics(rows, systems, keys, settings),
                     calibration=calibration_table(rows, systems, settings.calibration_bins), summary=summary)


def workbench_for(predictions: pd.DataFrame, prepared: PreparedData, config: Config) -> Workbench:
    """The workbench of the stored predictions with the shipped clustering and gate, when there are experts."""
    if not has_experts(config):
        return build_workbench(predictions, prepared, config.analysis)
    experts = load_experts(config)
    return build_workbench(predictions, prepared, config.analysis, experts.clustering.labels,
                           routing_branches(experts))


def save_workbench(workbench: Workbench, folder: Path) -> None:
    """Write the tables as parquet, then ``workbench.json`` last (a folder without it is never trusted)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SUMMARY).unlink(missing_ok=True)
    for name in FRAMES:
        getattr(workbench, name).to_parquet(folder / f"{name}.parquet", index=False)  # bins stay ordered categories
    write_json(folder / SUMMARY, workbench.summary)


def load_workbench(folder: Path) -> Workbench:
    """Read a saved workbench; a missing or unreadable file raises ``CheckpointError`` naming it."""
    folder = Path(folder)
    summary = read_json(folder / SUMMARY)
    frames = {}
    for name in FRAMES:
        path = folder / f"{name}.parquet"
        try:
            frames[name] = pd.read_parquet(path)
        except (FileNotFoundError, OSError, ValueError) as err:
            raise CheckpointError(f"{path}: missing or unreadable ({err}); rebuild with `python -m thinkrec "
                                  "report`") from err
    if "genre" in frames["rows"]:
        frames["rows"]["genre"] = [list(genres) for genres in frames["rows"]["genre"]]
    missing = [s for s in summary.get("systems", []) if s not in frames["rows"].columns]
    if missing or "fingerprint" not in summary:
        raise CheckpointError(f"{folder / SUMMARY}: does not match rows.parquet (systems {missing} missing or no "
                              "fingerprint); rebuild with `python -m thinkrec report`")
    return Workbench(summary=summary, **frames)


def write_workbench(prepared: PreparedData, config: Config) -> Path:
    """Build the workbench of the stored test predictions and store it under ``checkpoints/analysis/``, with the
    manifest refreshed."""
    predictions = test_predictions(prepared, config)
    folder = config.paths.checkpoints / FOLDER
    save_workbench(workbench_for(predictions, prepared, config), folder)
    write_manifest(config.paths.checkpoints)
    log.info("workbench: %d rows written to %s", len(predictions), folder)
    return folder

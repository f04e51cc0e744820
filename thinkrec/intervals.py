"""Honest intervals: AUC and UAUC with bootstrap intervals that resample users, not rows.

A user's rows are not independent draws: one taste moves all of them together. Each resample
therefore draws as many users as the rows hold, with replacement, and keeps every row of a drawn
user (a user drawn twice counts twice). The draws are made once per row set (``UserBootstrap``)
and shared by every system scored on those rows, so the interval of a difference between two
systems is paired: both are scored on the same resampled users. Intervals are percentile
intervals; a difference whose interval lies above 0 ``beats``, below 0 is ``below``, and one that
holds 0 is ``level with``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from thinkrec.metrics import auc, uauc, user_aucs

CHUNK = 128  # resamples weighted at once: bounds memory at CHUNK x rows floats
VERDICTS = ("beats", "level with", "below")


@dataclass(frozen=True)
class Interval:
    """A point estimate on the rows themselves and its bootstrap interval."""

    estimate: float
    low: float
    high: float

    @property
    def width(self) -> float:
        return self.high - self.low


def verdict(difference: Interval) -> str:
    """"beats" when the whole interval of a difference is above 0, "below" when it is under 0, else
    "level with"; "n/a" when there is no interval (too few users with both a like and a dislike)."""
    if math.isnan(difference.low) or math.isnan(difference.high):
        return "n/a"
    if difference.low > 0:
        return "beats"
    if difference.high < 0:
        return "below"
    return "level with"


class UserBootstrap:
    """``resamples`` draws of the users of one row set, seeded; every statistic below uses the same draws."""

    def __init__(self, users: np.ndarray, resamples: int, seed: int, confidence: float = 0.95):
        if resamples < 1:
            raise ValueError(f"the bootstrap needs at least one resample, got {resamples}")
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must lie between 0 and 1, got {confidence}")
        self.user_ids, self.codes = np.unique(np.asarray(users), return_inverse=True)
        self.confidence = confidence
        n = len(self.user_ids)
        draws = np.random.default_rng(seed).integers(0, max(n, 1), size=(resamples, n))
        offsets = np.arange(resamples)[:, None] * n
        # counts[b, u]: how often resample b drew user u
        self.counts = np.bincount((offsets + draws).ravel(), minlength=resamples * n).reshape(resamples, n)

    @property
    def resamples(self) -> int:
        return len(self.counts)

    @property
    def users(self) -> int:
        return len(self.user_ids)

    def aucs(self, labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """The AUC of every resample, (resamples,); NaN where a resample holds one class only.

        Each row weighs as often as its user was drawn: a weighted Mann-Whitney count over the
        scores sorted once, ties counting half."""
        labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=float)
        if len(labels) != len(self.codes) or len(scores) != len(self.codes):
            raise ValueError(f"{len(labels)} labels and {len(scores)} scores for {len(self.codes)} rows")
        result = np.full(self.resamples, np.nan)
        if not len(labels):
            return result
        order = np.argsort(scores, kind="stable")
        sorted_scores, positive, codes = scores[order], labels[order], self.codes[order]
        tie_starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
        for start in range(0, self.resamples, CHUNK):
            weights = self.counts[start:start + CHUNK][:, codes].astype(float)
            pos = np.add.reduceat(np.where(positive, weights, 0.0), tie_starts, axis=1)
            neg = np.add.reduceat(np.where(positive, 0.0, weights), tie_starts, axis=1)
            below = np.cumsum(neg, axis=1) - neg
            wins = (pos * (below + 0.5 * neg)).sum(axis=1)
            pairs = pos.sum(axis=1) * neg.sum(axis=1)
            result[start:start + CHUNK] = np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1.0), np.nan)
        return result

    def uaucs(self, users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """The UAUC of every resample: each drawn user's own AUC, averaged with the draw counts as weights."""
        kept, values = user_aucs(users, labels, scores)
        if not len(kept):
            return np.full(self.resamples, np.nan)
        return _weighted_means(self.counts[:, np.searchsorted(self.user_ids, kept)], values)

    def means(self, values: np.ndarray) -> np.ndarray:
        """The mean of a per-row value (a loss, a 0/1 outcome) in every resample, each row weighing as often as
        its user was drawn."""
        values = np.asarray(values, dtype=float)
        if len(values) != len(self.codes):
            raise ValueError(f"{len(values)} values for {len(self.codes)} rows")
        return _weighted_means(self.counts[:, self.codes], values)

    def interval(self, estimate: float, resampled: np.ndarray) -> Interval:
        """The percentile interval of the resampled values around ``estimate``."""
        valid = resampled[np.isfinite(resampled)]
        if math.isnan(estimate) or not len(valid):
            return Interval(float(estimate), math.nan, math.nan)
        tail = (1 - self.confidence) / 2 * 100
        low, high = np.percentile(valid, [tail, 100 - tail])
        return Interval(float(estimate), float(low), float(high))


def _weighted_means(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per resample (a row of ``counts``), the mean of ``values`` weighted by the counts; NaN where all are 0."""
    counts = counts.astype(float)
    drawn = counts.sum(axis=1)
    return np.where(drawn > 0, counts @ values / np.where(drawn > 0, drawn, 1.0), np.nan)


def system_intervals(table: pd.DataFrame, systems: list[str], reference: str | None, resamples: int, seed: int,
                     confidence: float = 0.95) -> pd.DataFrame:
    """AUC and UAUC of every system column of ``table`` (user, label, one P(like) column per system) with
    their intervals, and each one's paired difference to ``reference`` with its verdict.

    Columns: key, rows, users, auc, auc_low, auc_high, uauc, uauc_low, uauc_high, then (with a
    reference) auc_diff, auc_diff_low, auc_diff_high, uauc_diff, uauc_diff_low, uauc_diff_high, verdict.
    """
    missing = [s for s in [*systems, *([reference] if reference else [])] if s not in table.columns]
    if missing:
        raise ValueError(f"no P(like) column for {', '.join(missing)} among {', '.join(map(str, table.columns))}")
    users, labels = table["user"].to_numpy(), table["label"].to_numpy()
    bootstrap = UserBootstrap(users, resamples, seed, confidence)
    resampled, point = {}, {}
    for system in dict.fromkeys([*systems, *([reference] if reference else [])]):
        scores = table[system].to_numpy(dtype=float)
        point[system] = (auc(labels, scores), uauc(users, labels, scores))
        resampled[system] = (bootstrap.aucs(labels, scores), bootstrap.uaucs(users, labels, scores))
    rows = []
    for system in systems:
        row = {"key": system, "rows": len(table), "users": bootstrap.users}
        for n, metric in enumerate(("auc", "uauc")):
            row.update(_columns(metric, bootstrap.interval(point[system][n], resampled[system][n])))
            if reference:
                difference = bootstrap.interval(point[system][n] - point[reference][n],
                                                resampled[system][n] - resampled[reference][n])
                row.update(_columns(f"{metric}_diff", difference))
                if metric == "auc":
                    row["verdict"] = verdict(difference)
        rows.append(row)
    return pd.DataFrame(rows)


def paired_difference(table: pd.DataFrame, system: str, other: str, resamples: int, seed: int,
                      confidence: float = 0.95) -> Interval:
    """AUC of ``system`` minus AUC of ``other`` on the same rows, with its paired user-bootstrap interval."""
    frame = system_intervals(table, [system], other, resamples, seed, confidence).iloc[0]
    return Interval(frame["auc_diff"], frame["auc_diff_low"], frame["auc_diff_high"])


def _columns(prefix: str, interval: Interval) -> dict[str, float]:
    return {prefix: interval.estimate, f"{prefix}_low": interval.low, f"{prefix}_high": interval.high}

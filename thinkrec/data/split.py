"""Chronological train/valid/test splits and the prompt rows built on them.

Every row carries the user's last ``history_len`` interactions strictly before the target's
timestamp (liked and disliked, with their labels), whichever split those belong to: a person's
past is known at prediction time, their future never is.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from thinkrec.data.atomic import DataFileError

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
PAD = -1  # history slot without an interaction


def split_per_user(interactions: pd.DataFrame, valid_share: float, test_share: float) -> np.ndarray:
    """Each user's interactions in time order: the first ceil(n * (1 - valid - test)) to train,
    up to ceil(n * (1 - test)) to valid, the rest to test. Returns a split name per row."""
    order = interactions.sort_values(["user", "timestamp"], kind="stable").index
    users = interactions.loc[order, "user"].to_numpy()
    counts = np.bincount(users)
    rank = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)  # position within the user
    n = counts[users]
    train_end = np.ceil(n * (1 - valid_share - test_share) - 1e-9)  # epsilon: 20 * 0.9 is 18.000000000000004
    valid_end = np.ceil(n * (1 - test_share) - 1e-9)
    names = np.where(rank < train_end, "train", np.where(rank < valid_end, "valid", "test"))
    split = np.empty(len(interactions), dtype=object)
    split[interactions.index.get_indexer(order)] = names
    return split


def split_global(interactions: pd.DataFrame, valid_share: float, test_share: float) -> np.ndarray:
    """CoLLM's protocol: two global time cuts; prints how many valid/test users are warm."""
    times = interactions["timestamp"].to_numpy()
    test_cut = np.quantile(times, 1 - test_share)
    valid_cut = np.quantile(times, 1 - test_share - valid_share)
    split = np.where(times >= test_cut, "test", np.where(times >= valid_cut, "valid", "train")).astype(object)
    train_users = set(interactions.loc[split == "train", "user"])
    for name in ("valid", "test"):
        rows = interactions.loc[split == name, "user"]
        warm = rows.isin(train_users).mean() if len(rows) else 0.0
        log.warning("global split: %.1f%% of %s rows have a user seen in train", 100 * warm, name)
    return split


def build_rows(interactions: pd.DataFrame, split: np.ndarray, history_len: int) -> pd.DataFrame:
    """One row per interaction: user, item, label, split and the user's earlier history.

    ``hist_items``/``hist_labels`` hold the last ``history_len`` interactions with a timestamp
    strictly before the target's, oldest first, left-padded with ``PAD``.
    """
    frame = interactions.assign(split=split).sort_values(["user", "timestamp"], kind="stable")
    users = frame["user"].to_numpy()
    items = frame["item"].to_numpy()
    labels = frame["label"].to_numpy()
    times = frame["timestamp"].to_numpy()
    n = len(frame)
    hist_items = np.full((n, history_len), PAD, dtype=np.int64)
    hist_labels = np.full((n, history_len), PAD, dtype=np.int64)

    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], n]
    for start, end in zip(starts, ends):
        user_times = times[start:end]
        # Number of this user's interactions strictly earlier than each row's timestamp.
        earlier = np.searchsorted(user_times, user_times, side="left")
        for offset, count in enumerate(earlier):
            take = min(count, history_len)
            if take:
                hist_items[start + offset, history_len - take:] = items[start + count - take:start + count]
                hist_labels[start + offset, history_len - take:] = labels[start + count - take:start + count]

    rows = frame[["user", "item", "label", "rating", "timestamp", "split"]].reset_index(drop=True)
    rows["hist_items"] = list(hist_items)
    rows["hist_labels"] = list(hist_labels)
    return rows


def describe_split(rows: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Row count, like-rate and user count of each split; raises if a split is empty."""
    summary = {}
    for name in SPLITS:
        part = rows[rows["split"] == name]
        if part.empty:
            raise DataFileError(f"the {name} split is empty: the dataset is too small for this split")
        summary[name] = {"rows": int(len(part)), "like_rate": round(float(part["label"].mean()), 4),
                         "users": int(part["user"].nunique())}
    return summary

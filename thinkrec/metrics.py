"""Ranking metrics of click-through-style predictions: AUC and UAUC."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=float)))


def user_aucs(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each user's own AUC, for the users who have both a like and a dislike: (user ids, AUCs), by user id."""
    users, labels, scores = np.asarray(users), np.asarray(labels), np.asarray(scores, dtype=float)
    order = np.argsort(users, kind="stable")
    users, labels, scores = users[order], labels[order], scores[order]
    bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
    kept, values = [], []
    for start, end in zip(bounds[:-1], bounds[1:]):
        user_labels = labels[start:end]
        if 0 < user_labels.sum() < len(user_labels):
            kept.append(users[start])
            values.append(roc_auc_score(user_labels, scores[start:end]))
    return np.asarray(kept, dtype=users.dtype), np.asarray(values, dtype=float)


def uauc(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Per-user AUC averaged (unweighted) over users who have both a like and a dislike."""
    values = user_aucs(users, labels, scores)[1]
    return float(np.mean(values)) if len(values) else float("nan")


def auc_report(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """AUC, UAUC and the row count, rounded for reports."""
    return {"auc": round(auc(labels, scores), 4), "uauc": round(uauc(users, labels, scores), 4),
            "rows": int(len(labels))}

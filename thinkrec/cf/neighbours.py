"""Which films of a user's history sit closest to a target in a CF item-embedding space.

One owner for the teacher, which argues from these neighbours, and the prompt, which marks them
"close to the target": a trace never calls a film close that the prompt does not mark.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

NEAREST_TOP = 3  # history films kept as the target's nearest neighbours
CLOSE_MIN = 0.3  # cosine from which a nearest neighbour counts as close (and may be argued from)


def unit_rows(embeddings: Any) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero); accepts numpy arrays and torch tensors."""
    if hasattr(embeddings, "detach"):
        embeddings = embeddings.detach().cpu().numpy()
    matrix = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def comparable_history(titles: Sequence[str], target: int, hist_items, hist_labels) -> dict[int, bool]:
    """The history a target is compared with, oldest first: one entry per item (its latest label),
    without the target itself or another copy of its title; padding (negative items) is skipped."""
    latest: dict[int, bool] = {}
    for other, liked in zip(hist_items, hist_labels):
        other = int(other)
        if other >= 0 and other != target and titles[other] != titles[target]:
            latest.pop(other, None)
            latest[other] = bool(liked)
    return latest


def nearest(unit_vectors: np.ndarray, target: int, candidates: Sequence[int]) -> list[tuple[int, float]]:
    """Up to ``NEAREST_TOP`` candidates by cosine to ``target`` (nearest first, ties oldest first), rounded."""
    if not len(candidates):
        return []
    sims = unit_vectors[list(candidates)] @ unit_vectors[target]
    order = np.argsort(-sims, kind="stable")[:NEAREST_TOP]
    return [(int(candidates[i]), round(float(sims[i]), 4)) for i in order]


def close_items(unit_vectors: np.ndarray, target: int, candidates: Sequence[int]) -> list[int]:
    """The nearest candidates whose cosine reaches ``CLOSE_MIN``, nearest first: the films the prompt marks
    as close."""
    return [item for item, similarity in nearest(unit_vectors, target, candidates) if similarity >= CLOSE_MIN]

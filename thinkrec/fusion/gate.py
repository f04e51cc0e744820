"""The expert gate: which LoRA adapters answer for a user, and why.

As published, w = softmax(cos(e_u, c_k) / tau) over the K cluster centroids, then

1. one expert (the heaviest) if max w > 0.5 + single_margin / K  (strictly greater);
2. otherwise the global adapter if entropy(w) >= entropy_ratio * ln K;
3. otherwise the experts fused with weights w.

The single-expert rule is checked first, as in the authors' code; with the published settings
both rules can never hold at once, but with other settings the order decides. With K = 1 there
is nothing to choose between and the global adapter answers (the authors' rules give the same).
Embeddings and centroids live in the clustering's standardised space. The decision travels as a
``Routing`` value with each request; nothing here holds per-user state, so one ``Gate`` serves
concurrent visitors, and ``with_tau`` returns a new gate instead of changing a shared one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from thinkrec.config import GateSettings, check_number
from thinkrec.fusion.clusters import Clustering

SUM_TOLERANCE = 1e-6
PUBLISHED = GateSettings()  # the paper's temperature and thresholds


@dataclass(frozen=True)
class Routing:
    """The gate's decision for one user.

    ``expert`` is the chosen cluster (0-based) for a single-expert decision, else None. ``mixture``
    holds the adapter weights actually applied: index 0 the global adapter, index e + 1 the expert
    of cluster e (the reason numbers experts the same way, from 1). ``entropy`` is in nats.
    """

    decision: str
    expert: int | None
    weights: tuple[float, ...]
    mixture: tuple[float, ...]
    entropy: float
    reason: str


def gate_weights(user_vectors_std: np.ndarray, centroids: np.ndarray, tau: float) -> np.ndarray:
    """softmax(cos(e_u, c_k) / tau) for one vector (d,) -> (k,) or many (n, d) -> (n, k).

    A zero vector (or centroid) has cosine 0 with everything, so a zero user gets uniform weights.
    """
    check_number("gate tau", tau, low=0.0, strict=True)
    vectors = np.asarray(user_vectors_std, dtype=np.float64)
    centroids = np.asarray(centroids, dtype=np.float64)
    if centroids.ndim != 2 or vectors.ndim not in (1, 2) or vectors.shape[-1] != centroids.shape[1]:
        raise ValueError(f"user vectors {vectors.shape} and centroids {centroids.shape} do not match")
    if not (np.isfinite(vectors).all() and np.isfinite(centroids).all()):
        raise ValueError("user vectors and centroids must be finite")
    logits = _unit_rows(np.atleast_2d(vectors)) @ _unit_rows(centroids).T / tau
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights[0] if vectors.ndim == 1 else weights


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def entropy(weights: np.ndarray) -> float:
    """Shannon entropy in nats, with 0 ln 0 = 0."""
    positive = weights[weights > 0]
    return float(-(positive * np.log(positive)).sum())


def route(weights_row: np.ndarray, settings: GateSettings = PUBLISHED) -> Routing:
    """Apply the published rules (single first, then global, else fuse) to one row of gate weights."""
    w = _checked_weights(weights_row)
    k, h = len(w), entropy(w)
    weights = tuple(float(v) for v in w)
    if k == 1:
        return Routing("global", None, weights, (1.0, 0.0), h,
                       "There is only one user cluster, so there is no expert to choose: the global model answers.")
    best, threshold = int(np.argmax(w)), settings.single_threshold(k)
    if w[best] > threshold:
        share, needed = _format_pair(w[best], threshold, percent=True)
        mixture = tuple(1.0 if e == best + 1 else 0.0 for e in range(k + 1))
        return Routing("single", best, weights, mixture, h, f"Expert {best + 1} takes {share} of the weight, "
                       f"above the {needed} needed to hand the case to one expert.")
    ratio = h / math.log(k)
    if h >= settings.entropy_ratio * math.log(k):
        shown, needed = _format_pair(ratio, settings.entropy_ratio, percent=False)
        mixture = (1.0,) + (0.0,) * k
        return Routing("global", None, weights, mixture, h, f"The weights are spread almost evenly (entropy {shown} "
                       f"of the maximum, {needed} or more needed), so the global model answers.")
    blend = _join([f"{e + 1} ({w[e]:.0%})" for e in np.argsort(-w, kind="stable")])
    return Routing("fused", None, weights, (0.0, *weights), h, f"No expert takes more than the {threshold:.0%} "
                   f"needed to answer alone, and the weights are too uneven for the global model: the answer "
                   f"blends experts {blend} by their weights.")


def _checked_weights(weights_row: np.ndarray) -> np.ndarray:
    w = np.asarray(weights_row, dtype=np.float64)
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"gate weights must be one non-empty row, got shape {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any() or abs(w.sum() - 1.0) > SUM_TOLERANCE:
        raise ValueError(f"gate weights must be non-negative and sum to 1, got {w.tolist()}")
    return w


def _format_pair(value: float, bound: float, percent: bool) -> tuple[str, str]:
    """Format two numbers with the fewest decimals that still tell them apart."""
    for digits in range(0, 5) if percent else range(2, 7):
        spec = f".{digits}{'%' if percent else 'f'}"
        shown, needed = format(value, spec), format(bound, spec)
        if shown != needed:
            break
    return shown, needed


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


@dataclass(frozen=True, eq=False)
class Gate:
    """A clustering's centroids plus gate settings; routes raw CF user vectors."""

    clustering: Clustering
    settings: GateSettings = field(default_factory=GateSettings)

    @property
    def k(self) -> int:
        return self.clustering.k

    def weights(self, raw_vectors: np.ndarray) -> np.ndarray:
        """Gate weights of raw (not yet standardised) user vectors: (d,) -> (k,), (n, d) -> (n, k)."""
        standardised = self.clustering.standardiser.transform(raw_vectors)
        return gate_weights(standardised, self.clustering.centroids, self.settings.tau)

    def route_user(self, raw_user_vector: np.ndarray) -> Routing:
        vector = np.asarray(raw_user_vector)
        if vector.ndim != 1:
            raise ValueError(f"route_user takes one vector, got shape {vector.shape}; use route_users")
        return route(self.weights(vector), self.settings)

    def route_users(self, raw_matrix: np.ndarray) -> list[Routing]:
        matrix = np.asarray(raw_matrix)
        if matrix.ndim != 2:
            raise ValueError(f"route_users takes a (users, dims) matrix, got shape {matrix.shape}")
        return [route(row, self.settings) for row in self.weights(matrix)]

    def with_tau(self, tau: float) -> Gate:
        """A new gate with another temperature; this one is left unchanged."""
        return replace(self, settings=replace(self.settings, tau=tau))

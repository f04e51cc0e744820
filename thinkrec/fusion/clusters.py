"""User clusters for the per-cluster LoRA experts.

Users are clustered on their standardised CF embeddings, and the centroids are the member means
in that same standardised space, so the gate compares like with like (the published code clustered
standardised vectors but built its centroids from raw ones). The gate routes by angle (cosine to
the centroids), so by default the standardised vectors are also scaled to unit length before
clustering ("spherical" clustering): a distance-based grouping of unnormalised vectors sent 5-29 %
of ML-100K's users to another expert than their own cluster's. Each candidate clustering carries its
diagnostics: the silhouette and the heterogeneity of user activity between clusters (Cohen's d),
which the paper found to go with the gain from experts.

Storage (no pickle)::

    <folder>/centroids.safetensors   "centroids" (k, d), float64, standardised space
    <folder>/clusters.json           method, k, sizes, diagnostics, standardiser, user labels (written last)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from safetensors.numpy import load_file, save_file
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.metrics import silhouette_score

from thinkrec.errors import CheckpointError
from thinkrec.files import read_json

Method = Literal["kmeans", "ward"]
METHODS: tuple[str, ...] = ("kmeans", "ward")
CLUSTERS_JSON = "clusters.json"
CENTROIDS_FILE = "centroids.safetensors"


@dataclass(frozen=True, eq=False)
class Standardiser:
    """Per-dimension mean and standard deviation; a constant dimension keeps std 1."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardiser:
        x = np.asarray(x, dtype=np.float64)
        std = x.std(axis=0)
        return cls(mean=x.mean(axis=0), std=np.where(std > 0, std, 1.0))

    @property
    def dim(self) -> int:
        return len(self.mean)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Standardise one vector (d,) or a matrix (n, d)."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != self.dim:
            raise ValueError(f"expected vectors of dimension {self.dim}, got shape {x.shape}")
        return (x - self.mean) / self.std


@dataclass(frozen=True, eq=False)
class Clustering:
    """One clustering of the users and its diagnostics.

    ``cohens_d`` is the heterogeneity of activity between clusters (the largest pairwise |d|) and
    ``cohens_d_pairs`` the signed (k, k) matrix; both are None when no activity was given.
    """

    method: str
    k: int
    labels: np.ndarray  # (n,) cluster of each user, 0 = the largest cluster
    centroids: np.ndarray  # (k, d) member means in the standardised space
    standardiser: Standardiser
    silhouette: float  # on the standardised space; NaN for k = 1
    sizes: tuple[int, ...]
    cohens_d: float | None = None
    cohens_d_pairs: np.ndarray | None = None
    encoder: str = ""
    spherical: bool = True  # clustered on unit-length standardised vectors (angle, as the gate sees them)

    def points(self, raw_vectors: np.ndarray) -> np.ndarray:
        """Raw CF vectors in the space the clusters were found in (and the user map is drawn from)."""
        return clustering_space(self.standardiser, raw_vectors, self.spherical)


def clustering_space(standardiser: Standardiser, raw_vectors: np.ndarray, spherical: bool) -> np.ndarray:
    """Standardised vectors, projected onto the unit sphere when the clustering is ``spherical``."""
    points = standardiser.transform(np.asarray(raw_vectors, dtype=np.float64))
    if spherical:
        points = points / np.maximum(np.linalg.norm(points, axis=-1, keepdims=True), 1e-12)
    return points


def cohens_d_activity(labels: np.ndarray, activity: np.ndarray) -> tuple[float, np.ndarray]:
    """Heterogeneity of user activity between clusters, as Cohen's d.

    For clusters i and j, d_ij = (mean_i - mean_j) / s_pooled with
    s_pooled = sqrt(((n_i - 1) var_i + (n_j - 1) var_j) / (n_i + n_j - 2)) and sample variances.
    Cohen's d is defined for two groups; for k clusters we report the largest |d_ij| over all pairs
    (how far apart the two most different clusters are) and return the whole signed matrix.
    A pair with no pooled spread (zero variance or single-member clusters) has d = NaN and is left
    out of the maximum; one cluster gives 0.
    """
    labels = np.asarray(labels)
    activity = np.asarray(activity, dtype=np.float64)
    if labels.shape != activity.shape:
        raise ValueError(f"labels {labels.shape} and activity {activity.shape} must have the same shape")
    groups = [activity[labels == c] for c in range(int(labels.max()) + 1)]
    k = len(groups)
    pairs = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            pairs[i, j] = _cohens_d(groups[i], groups[j])
            pairs[j, i] = -pairs[i, j]
    if k == 1:
        return 0.0, pairs
    magnitudes = np.abs(pairs[~np.eye(k, dtype=bool)])
    if np.isnan(magnitudes).all():
        return math.nan, pairs
    return float(np.nanmax(magnitudes)), pairs


def _cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    dof = len(a) + len(b) - 2
    if dof <= 0 or len(a) == 0 or len(b) == 0:
        return math.nan
    spread = ((len(a) - 1) * _variance(a) + (len(b) - 1) * _variance(b)) / dof
    if spread <= 0:
        return math.nan
    return float((a.mean() - b.mean()) / math.sqrt(spread))


def _variance(x: np.ndarray) -> float:
    return float(x.var(ddof=1)) if len(x) > 1 else 0.0


def cluster_users(embeddings: np.ndarray, k: int, method: Method = "kmeans", seed: int = 0,
                  activity: np.ndarray | None = None, encoder: str = "", spherical: bool = True) -> Clustering:
    """Standardise, cluster with KMeans or Ward, and measure the result.

    Clusters are numbered by size, largest first (ties keep the algorithm's order), so the
    numbering is stable across methods and seeds.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be (users, dims), got shape {embeddings.shape}")
    if not 1 <= k <= len(embeddings):
        raise ValueError(f"k must be between 1 and the number of users ({len(embeddings)}), got {k}")
    standardiser = Standardiser.fit(embeddings)
    points = clustering_space(standardiser, embeddings, spherical)
    labels = _order_by_size(_fit_labels(points, k, method, seed), k)
    centroids = np.stack([points[labels == c].mean(axis=0) for c in range(k)])
    d, pairs = cohens_d_activity(labels, activity) if activity is not None else (None, None)
    sizes = tuple(int(n) for n in np.bincount(labels, minlength=k))
    return Clustering(method=method, k=k, labels=labels, centroids=centroids, standardiser=standardiser,
                      silhouette=_silhouette(points, labels, k), sizes=sizes, cohens_d=d, cohens_d_pairs=pairs,
                      encoder=encoder, spherical=spherical)


def _fit_labels(points: np.ndarray, k: int, method: str, seed: int) -> np.ndarray:
    if method == "kmeans":
        return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(points)
    if method == "ward":
        return AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(points)
    raise ValueError(f"method must be one of {METHODS}, not {method!r}")


def _order_by_size(labels: np.ndarray, k: int) -> np.ndarray:
    sizes = np.bincount(labels, minlength=k)
    if (sizes == 0).any():
        raise ValueError(f"clustering left empty clusters (sizes {sizes.tolist()})")
    order = np.argsort(-sizes, kind="stable")
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    return rank[labels]


def _silhouette(points: np.ndarray, labels: np.ndarray, k: int) -> float:
    if not 2 <= k < len(points):
        return math.nan
    return float(silhouette_score(points, labels))


def candidate_clusterings(embeddings: np.ndarray, activity: np.ndarray, ks: tuple[int, ...] = (2, 3, 4, 5),
                          methods: tuple[str, ...] = METHODS, seed: int = 0, encoder: str = "") -> list[Clustering]:
    """Every (k, method) clustering with its silhouette and Cohen's d, sorted by k then method."""
    return [cluster_users(embeddings, k, method, seed, activity=activity, encoder=encoder)
            for k in sorted(ks) for method in sorted(methods)]


def save_clustering(clustering: Clustering, folder: Path) -> None:
    """Write the centroids, then ``clusters.json`` (last, so a half-written folder is never trusted)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CLUSTERS_JSON).unlink(missing_ok=True)
    save_file({"centroids": np.ascontiguousarray(clustering.centroids, dtype=np.float64)}, folder / CENTROIDS_FILE)
    pairs = clustering.cohens_d_pairs
    meta = {"method": clustering.method, "k": clustering.k, "sizes": list(clustering.sizes),
            "silhouette": _json_float(clustering.silhouette), "cohens_d": _json_float(clustering.cohens_d),
            "cohens_d_pairs": None if pairs is None else [[_json_float(v) for v in row] for row in pairs],
            "encoder": clustering.encoder, "standardiser": {"mean": clustering.standardiser.mean.tolist(),
                                                             "std": clustering.standardiser.std.tolist()},
            "spherical": clustering.spherical, "labels": clustering.labels.tolist()}
    (folder / CLUSTERS_JSON).write_text(json.dumps(meta, indent=1), encoding="utf-8")


def load_clustering(folder: Path) -> Clustering:
    """Read a saved clustering; a missing, unreadable or inconsistent file raises ``CheckpointError``."""
    folder = Path(folder)
    meta_path, centroid_path = folder / CLUSTERS_JSON, folder / CENTROIDS_FILE
    meta = read_json(meta_path)
    try:
        standardiser = Standardiser(mean=np.asarray(meta["standardiser"]["mean"], dtype=np.float64),
                                    std=np.asarray(meta["standardiser"]["std"], dtype=np.float64))
        k, labels = int(meta["k"]), np.asarray(meta["labels"], dtype=np.int64)
        sizes = tuple(int(n) for n in meta["sizes"])
        pairs = meta.get("cohens_d_pairs")
        cohens_d = meta.get("cohens_d")
        fields = {"method": str(meta["method"]), "silhouette": _nan_if_null(meta["silhouette"]),
                  "cohens_d": None if cohens_d is None else float(cohens_d), "encoder": str(meta.get("encoder", "")),
                  "cohens_d_pairs": None if pairs is None else np.array(pairs, dtype=np.float64),
                  "spherical": bool(meta.get("spherical", False))}
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{meta_path}: missing or malformed field ({err!r})") from err
    centroids = _read_centroids(centroid_path)
    if centroids.shape != (k, standardiser.dim):
        raise CheckpointError(f"{centroid_path}: centroids have shape {centroids.shape}, but {meta_path.name} "
                              f"describes k={k} clusters of dimension {standardiser.dim}")
    if not _labels_match(labels, sizes, k):
        raise CheckpointError(f"{meta_path}: the user labels, the cluster sizes and k={k} disagree")
    return Clustering(k=k, labels=labels, centroids=centroids, standardiser=standardiser, sizes=sizes, **fields)


def _labels_match(labels: np.ndarray, sizes: tuple[int, ...], k: int) -> bool:
    if labels.ndim != 1 or len(sizes) != k or (labels.size and not 0 <= labels.min() <= labels.max() < k):
        return False
    return tuple(np.bincount(labels, minlength=k).tolist()) == tuple(sizes)


def _read_centroids(path: Path) -> np.ndarray:
    try:
        return load_file(path)["centroids"]
    except FileNotFoundError as err:
        raise CheckpointError(f"{path}: missing") from err
    except KeyError as err:
        raise CheckpointError(f"{path}: holds no 'centroids' tensor") from err
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path}: unreadable ({err})") from err


def _json_float(value: float | None) -> float | None:
    """JSON has no NaN: "not available" is stored as null."""
    return None if value is None or math.isnan(value) else float(value)


def _nan_if_null(value: float | None) -> float:
    return math.nan if value is None else float(value)

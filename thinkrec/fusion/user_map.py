"""A 2-D UMAP map of all users, and placing a new user on it without the fitted reducer.

A fitted ``umap.UMAP`` can only be stored with pickle, which this project does not use. The map
therefore keeps the training users' standardised embeddings and 2-D coordinates, and ``place``
positions a new vector with the rule UMAP's own ``transform`` uses to initialise new points
(``umap_.init_graph_transform``), without the optimisation epochs that follow it there:

* take the ``n_neighbors`` nearest training users (Euclidean, standardised space);
* weight them by the fuzzy-simplicial-set membership exp(-(d - rho) / sigma). UMAP's transform
  uses ``local_connectivity - 1`` = 0 neighbours for rho, so rho = 0 for the default settings;
  sigma comes from a binary search that makes the k weights sum to log2(k), with UMAP's floor
  of 1e-3 times the mean neighbour distance;
* a neighbour with weight 1 (distance 0: the vector is a training user) gives its coordinates
  exactly; otherwise the point is the weighted average of the neighbours' coordinates.

Storage (no pickle)::

    <folder>/user_map.parquet       user (index), x, y, cluster
    <folder>/user_map.safetensors   "embeddings" (n, d) standardised, "centroid_coords" (k, 2)
    <folder>/user_map.json          settings and fit seconds (written last)
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save_file

from thinkrec.errors import CheckpointError

PARQUET_FILE = "user_map.parquet"
TENSORS_FILE = "user_map.safetensors"
JSON_FILE = "user_map.json"
MIN_SIGMA_SCALE = 1e-3  # UMAP's MIN_K_DIST_SCALE
SIGMA_ITERATIONS = 64
SIGMA_TOLERANCE = 1e-5


@dataclass(frozen=True, eq=False)
class UserMap:
    """User coordinates on the map plus what ``place`` needs to add new users to it."""

    coords: np.ndarray  # (n, 2)
    labels: np.ndarray  # (n,) cluster of each user
    centroid_coords: np.ndarray  # (k, 2) the centroids, projected with the fitted reducer
    embeddings: np.ndarray  # (n, d) standardised training embeddings
    n_neighbors: int
    min_dist: float
    seed: int
    fit_seconds: float

    def place(self, vector_std: np.ndarray) -> tuple[float, float]:
        """Map coordinates of a new standardised embedding (see the module docstring)."""
        vector = np.asarray(vector_std, dtype=np.float64)
        if vector.shape != (self.embeddings.shape[1],):
            raise ValueError(f"expected one vector of dimension {self.embeddings.shape[1]}, got shape {vector.shape}")
        distances = np.linalg.norm(self.embeddings - vector, axis=1)
        k = min(self.n_neighbors, len(distances))
        nearest = np.argsort(distances, kind="stable")[:k]
        weights = membership_strengths(distances[nearest])
        if k == 1 or weights[0] == 1.0:  # UMAP's rule: a neighbour with full membership gives its place
            x, y = self.coords[nearest[0]]
        else:
            x, y = weights @ self.coords[nearest] / weights.sum()
        return float(x), float(y)


def membership_strengths(distances: np.ndarray) -> np.ndarray:
    """exp(-d / sigma) for sorted neighbour distances, sigma chosen so the weights sum to log2(k)."""
    target = math.log2(len(distances))
    low, high, sigma = 0.0, math.inf, 1.0
    for _ in range(SIGMA_ITERATIONS):
        total = np.exp(-distances / sigma).sum()
        if abs(total - target) < SIGMA_TOLERANCE:
            break
        if total > target:
            high = sigma
            sigma = (low + high) / 2
        else:
            low = sigma
            sigma = sigma * 2 if math.isinf(high) else (low + high) / 2
    sigma = max(sigma, MIN_SIGMA_SCALE * float(distances.mean()))
    return np.exp(-distances / sigma)


def fit_user_map(embeddings_std: np.ndarray, labels: np.ndarray, centroids_std: np.ndarray, seed: int,
                 n_neighbors: int = 15, min_dist: float = 0.1) -> UserMap:
    """Fit UMAP on the standardised user embeddings and project the centroids onto the map."""
    import umap  # imported here: loading it compiles numba code and takes seconds

    embeddings = np.asarray(embeddings_std, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if embeddings.ndim != 2 or labels.shape != (len(embeddings),):
        raise ValueError(f"embeddings {embeddings.shape} and labels {labels.shape} do not match")
    started = time.perf_counter()
    reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed, n_jobs=1)
    coords = reducer.fit_transform(embeddings)
    centroid_coords = reducer.transform(np.asarray(centroids_std, dtype=np.float64))
    seconds = time.perf_counter() - started
    return UserMap(coords=np.asarray(coords, dtype=np.float64), labels=labels,
                   centroid_coords=np.asarray(centroid_coords, dtype=np.float64), embeddings=embeddings,
                   n_neighbors=n_neighbors, min_dist=min_dist, seed=seed, fit_seconds=round(seconds, 3))


def save_user_map(user_map: UserMap, folder: Path) -> None:
    """Write the coordinates, the tensors, then ``user_map.json`` (last: it marks the folder complete)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / JSON_FILE).unlink(missing_ok=True)
    table = pd.DataFrame({"user": np.arange(len(user_map.coords)), "x": user_map.coords[:, 0],
                          "y": user_map.coords[:, 1], "cluster": user_map.labels})
    table.to_parquet(folder / PARQUET_FILE, index=False)
    save_file({"embeddings": np.ascontiguousarray(user_map.embeddings, dtype=np.float64),
               "centroid_coords": np.ascontiguousarray(user_map.centroid_coords, dtype=np.float64)},
              folder / TENSORS_FILE)
    meta = {"n_users": len(user_map.coords), "dim": user_map.embeddings.shape[1],
            "k": len(user_map.centroid_coords), "n_neighbors": user_map.n_neighbors, "min_dist": user_map.min_dist,
            "seed": user_map.seed, "fit_seconds": user_map.fit_seconds}
    (folder / JSON_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")


def load_user_map(folder: Path) -> UserMap:
    """Read a saved map; a missing, unreadable or inconsistent file raises ``CheckpointError``."""
    folder = Path(folder)
    meta = _read_meta(folder / JSON_FILE)
    table = _read_table(folder / PARQUET_FILE)
    tensors = _read_tensors(folder / TENSORS_FILE)
    n, dim, k = meta["n_users"], meta["dim"], meta["k"]
    if len(table) != n or not np.array_equal(table["user"].to_numpy(), np.arange(n)):
        raise CheckpointError(f"{folder / PARQUET_FILE}: expected users 0..{n - 1} in order, "
                              f"as {JSON_FILE} says, found {len(table)} rows")
    if tensors["embeddings"].shape != (n, dim) or tensors["centroid_coords"].shape != (k, 2):
        raise CheckpointError(f"{folder / TENSORS_FILE}: shapes {tensors['embeddings'].shape} and "
                              f"{tensors['centroid_coords'].shape} differ from ({n}, {dim}) and ({k}, 2) "
                              f"in {JSON_FILE}")
    return UserMap(coords=table[["x", "y"]].to_numpy(dtype=np.float64), labels=table["cluster"].to_numpy(np.int64),
                   centroid_coords=tensors["centroid_coords"], embeddings=tensors["embeddings"],
                   n_neighbors=meta["n_neighbors"], min_dist=meta["min_dist"], seed=meta["seed"],
                   fit_seconds=meta["fit_seconds"])


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        return {"n_users": int(meta["n_users"]), "dim": int(meta["dim"]), "k": int(meta["k"]),
                "n_neighbors": int(meta["n_neighbors"]), "min_dist": float(meta["min_dist"]),
                "seed": int(meta["seed"]), "fit_seconds": float(meta["fit_seconds"])}
    except FileNotFoundError as err:
        raise CheckpointError(f"{path}: missing") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from err
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: missing or malformed field ({err!r})") from err


def _read_table(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_parquet(path)
    except FileNotFoundError as err:
        raise CheckpointError(f"{path}: missing") from err
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable ({err})") from err
    missing = {"user", "x", "y", "cluster"} - set(table.columns)
    if missing:
        raise CheckpointError(f"{path}: lacks the columns {sorted(missing)}")
    return table


def _read_tensors(path: Path) -> dict[str, np.ndarray]:
    try:
        tensors = load_file(path)
    except FileNotFoundError as err:
        raise CheckpointError(f"{path}: missing") from err
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path}: unreadable ({err})") from err
    missing = {"embeddings", "centroid_coords"} - set(tensors)
    if missing:
        raise CheckpointError(f"{path}: lacks the tensors {sorted(missing)}")
    return tensors

"""The cluster experts on disk, read and written here alone, and the one mapping from routing to weights.

Layout under the fused system's folder (``checkpoints/llm/experts/``, see ``thinkrec.registry``)::

    clusters/            clusters.json + centroids.safetensors (the chosen clustering)
    expert_<e>/          one trained system folder per cluster (PEFT adapter + config.json)
    user_map/            the UMAP map of every user in the clustering's space
    selection.json       K, the clustering method, the encoder, the gate settings, the choice table and rule
                         (``fusion.choice``), the global adapter the experts started from and their training

Until the chosen experts are trained, the choice is kept with the training state (committed, so that
every session trains the same experts)::

    <training>/experts/choice.json   the table of candidates, the pick, why, and the inputs it was made from
    <training>/experts/clusters/     the chosen clustering

Evaluation (``fusion.fused``), serving (``serving.bank``), the explorer, the report and the pipeline
all read them through this module. Adapter weights are laid out [global adapter, expert 1 .. K].
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thinkrec import registry
from thinkrec.cf.store import load_embeddings
from thinkrec.config import Config, GateSettings
from thinkrec.errors import CheckpointError
from thinkrec.files import read_json, write_json
from thinkrec.fusion.clusters import Clustering, load_clustering, save_clustering
from thinkrec.fusion.gate import Gate, Routing
from thinkrec.fusion.user_map import JSON_FILE as MAP_FILE
from thinkrec.fusion.user_map import UserMap, load_user_map
from thinkrec.guest import GuestUser

MODES = ("fused", "global", "hard")  # the gate's choice, the global adapter only, the top expert only
SELECTION = "selection.json"
CHOICE = "choice.json"


def experts_dir(config: Config) -> Path:
    return registry.folder(config, "fused")


def user_map_dir(config: Config) -> Path:
    return experts_dir(config) / "user_map"


def has_experts(config: Config) -> bool:
    return (experts_dir(config) / SELECTION).exists()


def read_selection(config: Config) -> dict:
    return read_json(experts_dir(config) / SELECTION)


def write_selection(config: Config, choice: dict, origin: str, experts: list[dict]) -> None:
    """Record the chosen clustering (``choice``, as ``write_choice`` kept it) with the configured encoder and gate
    settings, the fingerprint of the global adapter the experts started from and each expert's training."""
    selection = {"k": choice["k"], "method": choice["method"], "encoder": config.fusion.encoder,
                 "gate": dataclasses.asdict(config.fusion.gate), "rule": choice["rule"], "reason": choice["reason"],
                 "candidates": choice["candidates"], "origin": origin, "experts": experts}
    write_json(experts_dir(config) / SELECTION, selection)


def choice_dir(config: Config) -> Path:
    return config.paths.training / "experts"


def read_choice(config: Config) -> dict | None:
    """The stored choice of clustering, or None before one was made."""
    path = choice_dir(config) / CHOICE
    return read_json(path) if path.exists() else None


def write_choice(config: Config, choice: dict, clustering: Clustering) -> None:
    """Keep the chosen clustering, then the choice (last: a half-written folder holds no choice)."""
    folder = choice_dir(config)
    (folder / CHOICE).unlink(missing_ok=True)
    save_clustering(clustering, folder / "clusters")
    write_json(folder / CHOICE, choice)


def load_chosen_clustering(config: Config) -> Clustering:
    """The clustering the stored choice picked, checked against the K it records."""
    choice = read_choice(config)
    if choice is None:
        raise CheckpointError(f"{choice_dir(config) / CHOICE}: missing; choose the clustering first "
                              "(`python -m thinkrec clustering`)")
    clustering = load_clustering(choice_dir(config) / "clusters")
    if (clustering.method, clustering.k) != (choice["method"], int(choice["k"])):
        raise CheckpointError(f"{choice_dir(config) / 'clusters'}: holds {clustering.method} K={clustering.k}, "
                              f"{CHOICE} chose {choice['method']} K={choice['k']}")
    return clustering


def adapter_folders(folder: Path, k: int) -> list[Path]:
    """The PEFT adapter folder of each of the ``k`` experts kept under ``folder``."""
    return [folder / f"expert_{e}" / "adapter" for e in range(k)]


def ship(config: Config, clusters: Path, experts: list[Path]) -> None:
    """Make the clustering in ``clusters`` and the trained ``experts`` (system folders, one per cluster, in
    order) the shipped ones, replacing the old experts and everything scored on them."""
    root = experts_dir(config)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    shutil.copytree(clusters, root / "clusters")
    for number, folder in enumerate(experts):
        shutil.copytree(folder, root / f"expert_{number}")


def load_shipped_clustering(config: Config) -> Clustering:
    """The chosen clustering, checked against the K that selection.json records."""
    root = experts_dir(config)
    clustering = load_clustering(root / "clusters")
    k = int(read_selection(config)["k"])
    if clustering.k != k:
        raise CheckpointError(f"{root / 'clusters'}: holds {clustering.k} clusters, {SELECTION} says {k}")
    return clustering


def load_shipped_user_map(config: Config) -> UserMap | None:
    folder = user_map_dir(config)
    return load_user_map(folder) if (folder / MAP_FILE).exists() else None


def adapter_weights(route: Routing, mode: str = "fused") -> np.ndarray:
    """Weights over [global, expert 1 .. K] for one routed user: the gate's mixture, the global
    adapter alone, or the top expert alone."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "fused":
        return np.asarray(route.mixture, dtype=np.float64)
    weights = np.zeros(len(route.weights) + 1)
    weights[0 if mode == "global" else 1 + int(np.argmax(route.weights))] = 1.0
    return weights


def expert_alone(k: int, cluster: int) -> np.ndarray:
    """Weights over [global, expert 1 .. K] that let the expert of ``cluster`` (0-based) answer alone."""
    return np.eye(k + 1)[cluster + 1]


@dataclass(frozen=True, eq=False)
class Experts:
    """A clustering's gate, the user vectors it reads and one adapter folder per cluster."""

    gate: Gate
    user_vectors: np.ndarray  # raw CF user embeddings of ``encoder``
    adapters: tuple[Path, ...]
    encoder: str

    def __post_init__(self) -> None:
        if len(self.adapters) != self.k:
            raise CheckpointError(f"{self.k} clusters but {len(self.adapters)} expert adapters")

    @property
    def k(self) -> int:
        return self.gate.k

    @property
    def clustering(self) -> Clustering:
        return self.gate.clustering

    def routing(self, user: int | GuestUser, tau: float | None = None) -> Routing:
        """The gate's decision for a data user or a guest (routed by their folded vector)."""
        gate = self.gate if tau is None else self.gate.with_tau(tau)
        vector = user.folded[self.encoder].vector if isinstance(user, GuestUser) else self.user_vectors[user]
        return gate.route_user(vector)

    def weights(self, user: int | GuestUser, mode: str = "fused", tau: float | None = None) -> np.ndarray:
        return adapter_weights(self.routing(user, tau), mode)

    def rows(self, users: np.ndarray, mode: str = "fused", tau: float | None = None) -> np.ndarray:
        """Adapter weights per row of ``users`` (data indices): (rows, K + 1)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        rows = np.zeros((len(users), self.k + 1))
        for number, user in enumerate(users):
            rows[number] = self.weights(int(user), mode, tau)
        return rows


def make_experts(config: Config, clustering: Clustering, adapters: list[Path], settings: GateSettings,
                 encoder: str) -> Experts:
    """Experts over ``clustering`` whose gate reads ``encoder``'s user embeddings."""
    vectors = load_embeddings(config, encoder)["user"].numpy()
    return Experts(Gate(clustering, settings), vectors, tuple(adapters), encoder)


def load_experts(config: Config) -> Experts:
    """The shipped clustering, gate settings and experts."""
    selection = read_selection(config)
    clustering = load_shipped_clustering(config)
    return make_experts(config, clustering, adapter_folders(experts_dir(config), clustering.k),
                        GateSettings(**selection["gate"]), selection["encoder"])

"""ThinkRec with instance-wise expert fusion for evaluation: the global adapter and the cluster
experts, mixed per row by the gate (serving goes through ``thinkrec.llm.bank``).

Layout under ``checkpoints/llm/experts/``::

    clusters/            clusters.json + centroids.safetensors (the chosen clustering)
    expert_<e>/          one trained system folder per cluster (PEFT adapter + config.json)
    selection.json       K, the clustering method, gate settings and the valid AUC of every candidate
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from thinkrec.cf.store import load_embeddings
from thinkrec.config import Config
from thinkrec.data.prepared import PreparedData
from thinkrec.errors import CheckpointError
from thinkrec.files import read_json, write_json
from thinkrec.fusion.clusters import Clustering, load_clustering
from thinkrec.fusion.gate import Gate, GateSettings, Routing
from thinkrec.fusion.lora import install_mixture
from thinkrec.llm.backbone import load_backbone
from thinkrec.llm.model import SoftTokenLM
from thinkrec.llm.prompt import PromptBuilder
from thinkrec.llm.score import score_rows
from thinkrec.llm.systems import llm_dir, load_projected_model, prompt_builder, system_spec

MODES = ("fused", "global", "hard")  # the gate's choice, the global adapter only, the top expert only


def experts_dir(config: Config) -> Path:
    return llm_dir(config, "experts")


def gate_settings(config: Config) -> GateSettings:
    fusion = config.fusion
    return GateSettings(tau=fusion.tau, single_margin=fusion.single_margin, entropy_ratio=fusion.entropy_ratio)


@dataclass
class FusedSystem:
    """One model whose LoRA layers hold the global adapter (index 0) and K experts (1..K)."""

    model: SoftTokenLM
    builder: PromptBuilder
    gate: Gate
    user_vectors: np.ndarray  # raw CF user embeddings of the clustering encoder

    @property
    def k(self) -> int:
        return self.gate.clustering.k

    def routing(self, user: int, tau: float | None = None) -> Routing:
        gate = self.gate if tau is None else self.gate.with_tau(tau)
        return gate.route_user(self.user_vectors[user])

    def mixtures(self, users: np.ndarray, mode: str = "fused", tau: float | None = None) -> np.ndarray:
        """Adapter weights per row: the gate's mixture, the global adapter, or the top expert alone."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        rows = np.zeros((len(users), self.k + 1))
        for number, user in enumerate(users):
            route = self.routing(int(user), tau)
            if mode == "fused":
                rows[number] = route.mixture
            elif mode == "global":
                rows[number, 0] = 1.0
            else:
                rows[number, 1 + int(np.argmax(route.weights))] = 1.0
        return rows

    def score(self, frame: pd.DataFrame, mode: str = "fused", desc: str = "fused") -> np.ndarray:
        return score_rows(self.model, self.builder, frame, desc=desc,
                          mixtures=self.mixtures(frame["user"].to_numpy(), mode))


def build_fused(prepared: PreparedData, config: Config, clustering: Clustering, expert_adapters: list[Path],
                settings: GateSettings, encoder: str, backbone=None, tokenizer=None) -> FusedSystem:
    """The global ThinkRec adapter plus ``expert_adapters`` in one mixing model, gated by ``clustering``."""
    if len(expert_adapters) != clustering.k:
        raise CheckpointError(f"{clustering.k} clusters but {len(expert_adapters)} expert adapters")
    if backbone is None:
        backbone, tokenizer = load_backbone(config)
    install_mixture(backbone, [llm_dir(config, "thinkrec") / "adapter", *expert_adapters])
    spec = system_spec("thinkrec")
    model = load_projected_model(spec, backbone, tokenizer, config, llm_dir(config, "thinkrec"))
    builder = prompt_builder(spec, prepared, tokenizer, config, llm_dir(config, "thinkrec"))
    vectors = load_embeddings(config, encoder)["user"].numpy()
    return FusedSystem(model, builder, Gate(clustering, settings), vectors)


def load_fused(prepared: PreparedData, config: Config, backbone=None, tokenizer=None) -> FusedSystem:
    """The selected clustering and its experts from ``checkpoints/llm/experts/``."""
    root = experts_dir(config)
    selection = read_json(root / "selection.json")
    clustering = load_clustering(root / "clusters")
    if clustering.k != int(selection["k"]):
        raise CheckpointError(f"{root / 'clusters'}: holds {clustering.k} clusters, "
                              f"selection.json says {selection['k']}")
    adapters = [root / f"expert_{e}" / "adapter" for e in range(clustering.k)]
    return build_fused(prepared, config, clustering, adapters, GateSettings(**selection["gate"]),
                       selection["encoder"], backbone, tokenizer)


def write_selection(root: Path, method: str, k: int, config: Config, candidates: list[dict]) -> None:
    gate = gate_settings(config)
    selection = {"k": k, "method": method, "encoder": config.fusion.encoder,
                 "gate": {"tau": gate.tau, "single_margin": gate.single_margin, "entropy_ratio": gate.entropy_ratio},
                 "candidates": candidates}
    write_json(root / "selection.json", selection)

"""Every trained LLM system on one shared backbone, for serving.

Loading one backbone per system would cost ~540 MB each. Instead the backbone's LoRA layers hold
the adapters of all systems at once (``MixtureLoRALinear``): ThinkRec's global adapter, its cluster
experts, CoLLM-style and TALLRec-style. A request names a system and gets that system's adapter
mixture (the gate's weights for fused ThinkRec, one-hot for the others, none for zero-shot), its
projector and its prompt. Nothing shared is modified per request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from thinkrec.config import Config
from thinkrec.data.prepared import PreparedData
from thinkrec.files import read_json
from thinkrec.fusion.lora import install_mixture, mixture
from thinkrec.guest import GuestUser
from thinkrec.llm.backbone import load_backbone
from thinkrec.llm.generate import GenerationSettings, TextStream
from thinkrec.llm.model import SoftTokenLM, collate
from thinkrec.llm.prompt import EncodedPrompt, PromptBuilder
from thinkrec.llm.systems import build_model, llm_dir, load_projected_model, prompt_builder, system_spec

log = logging.getLogger(__name__)
LABELS = {"fused": "ThinkRec (fused experts)", "thinkrec": "ThinkRec (global expert)", "collm": "CoLLM-style",
          "tallrec": "TALLRec-style", "zeroshot": "Zero-shot LLM"}


@dataclass
class Served:
    """How one system answers: its model view (projector), prompt builder and adapter slot."""

    name: str
    model: SoftTokenLM
    builder: PromptBuilder
    slot: int | None  # index of its adapter in the mixture; None for zero-shot and for fused


@dataclass(frozen=True)
class Variant:
    """One way ThinkRec can answer in the expert ablation: a label and its adapter mixture."""

    label: str
    weights: np.ndarray


class LLMBank:
    """All available LLM systems over one backbone with stacked adapters.

    A user is a data index or a ``GuestUser``; the gate routes a guest by their folded vector."""

    def __init__(self, served: dict[str, Served], n_adapters: int, gate=None, gate_vectors: np.ndarray | None = None,
                 gate_encoder: str = ""):
        self.served = served
        self.n_adapters = n_adapters
        self.gate = gate  # thinkrec.fusion.gate.Gate, when experts were trained
        self.gate_vectors = gate_vectors
        self.gate_encoder = gate_encoder  # the CF encoder whose user vectors the gate reads

    @property
    def systems(self) -> list[str]:
        return list(self.served)

    def routing(self, user: int | GuestUser, tau: float | None = None):
        """The gate's decision for ``user`` (None without experts)."""
        if self.gate is None:
            return None
        gate = self.gate if tau is None else self.gate.with_tau(tau)
        vector = user.folded[self.gate_encoder].vector if isinstance(user, GuestUser) else self.gate_vectors[user]
        return gate.route_user(vector)

    def experts(self) -> list[Variant]:
        """Each cluster expert alone (empty without experts)."""
        if self.gate is None:
            return []
        one_hot = np.eye(self.n_adapters)
        return [Variant(f"Expert {e}", one_hot[e]) for e in range(1, self.gate.k + 1)]

    def ablation(self, user: int | GuestUser, tau: float | None = None) -> list[Variant]:
        """ThinkRec's global adapter, each cluster expert alone, and the gate's choice (empty without experts)."""
        if self.gate is None:
            return []
        return [Variant("Global adapter", np.eye(self.n_adapters)[0]), *self.experts(),
                Variant("Gate's choice (fused)", self.weights("fused", user, tau))]

    def weights(self, system: str, user: int | GuestUser, tau: float | None = None) -> np.ndarray:
        """The adapter mixture ``system`` uses for ``user``."""
        weights = np.zeros(self.n_adapters)
        if system == "fused":
            route = self.routing(user, tau)
            weights[: len(route.mixture)] = route.mixture
        elif self.served[system].slot is not None:
            weights[self.served[system].slot] = 1.0
        return weights

    def prompt(self, system: str, user: int | GuestUser, item: int, hist_items, hist_labels) -> EncodedPrompt:
        return self.served[system].builder.encode(user, item, hist_items, hist_labels)

    def p_yes(self, system: str, user: int | GuestUser, item: int, hist_items, hist_labels,
              tau: float | None = None) -> float:
        return self.p_yes_under(system, user, item, hist_items, hist_labels, [self.weights(system, user, tau)])[0]

    @torch.no_grad()
    def p_yes_under(self, system: str, user: int | GuestUser, item: int, hist_items, hist_labels,
                    mixtures: list[np.ndarray]) -> list[float]:
        """P(Yes) of one prompt under several adapter mixtures, in one batch (each row its own mixture)."""
        served = self.served[system]
        prompt = self.prompt(system, user, item, hist_items, hist_labels)
        batch = collate([prompt] * len(mixtures), served.builder.tokenizer.pad_token_id)
        with mixture(torch.as_tensor(np.stack(mixtures))):
            return served.model.p_yes(batch).tolist()

    def stream(self, system: str, user: int | GuestUser, item: int, hist_items, hist_labels,
               settings: GenerationSettings, tau: float | None = None, weights: np.ndarray | None = None
               ) -> TextStream:
        """A token stream of the system's answer under its mixture (or ``weights``, for the ablation);
        the mixture travels with the stream's context."""
        served = self.served[system]
        prompt = self.prompt(system, user, item, hist_items, hist_labels)
        weights = self.weights(system, user, tau) if weights is None else weights
        with mixture(torch.as_tensor(weights[None])):
            return TextStream(served.model, served.builder.tokenizer, prompt, settings)


def load_bank(prepared: PreparedData, config: Config, backbone=None, tokenizer=None) -> LLMBank:
    """Load every LLM system whose checkpoint exists (zero-shot always) onto one backbone."""
    from thinkrec.cf.store import load_embeddings
    from thinkrec.fusion.clusters import load_clustering
    from thinkrec.fusion.gate import Gate, GateSettings

    if backbone is None:
        backbone, tokenizer = load_backbone(config)
    trained = [name for name in ("thinkrec", "collm", "tallrec") if (llm_dir(config, name) / "config.json").exists()]
    adapters = [llm_dir(config, name) / "adapter" for name in trained]
    experts_root = llm_dir(config, "experts")
    gate, vectors, expert_slots, gate_encoder = None, None, 0, ""
    if "thinkrec" in trained and (experts_root / "selection.json").exists():
        selection = read_json(experts_root / "selection.json")
        clustering = load_clustering(experts_root / "clusters")
        gate = Gate(clustering, GateSettings(**selection["gate"]))
        gate_encoder = selection["encoder"]
        vectors = load_embeddings(config, gate_encoder)["user"].numpy()
        expert_slots = clustering.k
        experts = [experts_root / f"expert_{e}" / "adapter" for e in range(clustering.k)]
        adapters = [adapters[0], *experts, *adapters[1:]]
    if adapters:
        install_mixture(backbone, adapters)
    served: dict[str, Served] = {}
    slot = 0
    for name in trained:
        spec = system_spec(name)
        model = load_projected_model(spec, backbone, tokenizer, config, llm_dir(config, name))
        builder = prompt_builder(spec, prepared, tokenizer, config, llm_dir(config, name))
        served[name] = Served(name, model, builder, slot)
        slot += 1 + (expert_slots if name == "thinkrec" else 0)
    if gate is not None:
        served = {"fused": Served("fused", served["thinkrec"].model, served["thinkrec"].builder, None), **served}
    zeroshot = system_spec("zeroshot")
    served["zeroshot"] = Served("zeroshot", build_model(zeroshot, backbone, tokenizer, config).eval(),
                                prompt_builder(zeroshot, prepared, tokenizer, config), None)
    log.info("LLM systems ready on one backbone: %s (%d adapters)", ", ".join(served), len(adapters))
    return LLMBank(served, max(len(adapters), 1), gate, vectors, gate_encoder)

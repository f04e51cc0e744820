"""ThinkRec with instance-wise expert fusion, for evaluation: the global adapter and the cluster
experts (``fusion.experts``) on one mixing model, each row weighted by the gate."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from thinkrec.config import Config
from thinkrec.data.prepared import PreparedData
from thinkrec.fusion.experts import Experts, load_experts
from thinkrec.llm.backbone import load_backbone
from thinkrec.llm.lora_mixture import install_mixture
from thinkrec.llm.model import SoftTokenLM
from thinkrec.llm.prompt import PromptBuilder
from thinkrec.llm.score import Scored, ScoreSettings, score_job, score_rows
from thinkrec.llm.systems import adapter_dir, llm_dir, load_projected_model, prompt_builder, system_spec
from thinkrec.timebox import TimeBox


@dataclass
class FusedSystem:
    """One model whose LoRA layers hold the global adapter (index 0) and K experts (1..K)."""

    model: SoftTokenLM
    builder: PromptBuilder
    experts: Experts
    scoring: ScoreSettings = field(default_factory=ScoreSettings)

    def mixtures(self, users: np.ndarray, mode: str = "fused", tau: float | None = None) -> np.ndarray:
        """Adapter weights per row: the gate's mixture, the global adapter, or the top expert alone."""
        return self.experts.rows(users, mode, tau)

    def score(self, frame: pd.DataFrame, mode: str = "fused", desc: str = "fused") -> np.ndarray:
        return score_rows(self.model, self.builder, frame, self.scoring, desc,
                          self.mixtures(frame["user"].to_numpy(), mode))

    def mode_jobs(self, frame: pd.DataFrame, modes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The distinct (row of ``frame``, adapter mixture...) pairs ``score_modes`` scores, and for each mode and
        row (flattened, mode by mode) the pair that gives its score."""
        users = frame["user"].to_numpy()
        wanted = np.column_stack([np.tile(np.arange(len(frame)), len(modes)),
                                  np.concatenate([self.mixtures(users, mode) for mode in modes])])
        jobs, inverse = np.unique(wanted, axis=0, return_inverse=True)
        return jobs, inverse.reshape(-1)

    def score_modes(self, frame: pd.DataFrame, modes: tuple[str, ...], desc: str = "fused",
                    resume: Path | None = None, timebox: TimeBox | None = None) -> tuple[dict[str, np.ndarray], Scored]:
        """Each mode's P(Yes) for every row of ``frame`` in one pass (``score_job``, resumable): a row that two
        modes give the same adapter mixture is scored once (the gate hands most users to one expert, and then
        fused and hard routing agree), and rows under different mixtures share batches."""
        jobs, inverse = self.mode_jobs(frame, modes)
        scored = score_job(self.model, self.builder, frame.iloc[jobs[:, 0].astype(int)], self.scoring, desc,
                           jobs[:, 1:], resume, timebox)
        p_yes = scored.p_yes[inverse].reshape(len(modes), len(frame))
        return dict(zip(modes, p_yes)), scored


def build_fused(prepared: PreparedData, config: Config, experts: Experts, backbone=None,
                tokenizer=None) -> FusedSystem:
    """The global ThinkRec adapter plus ``experts``' adapters in one mixing model."""
    if backbone is None:
        backbone, tokenizer = load_backbone(config)
    install_mixture(backbone, [adapter_dir(config, "thinkrec"), *experts.adapters])
    spec = system_spec("thinkrec")
    model = load_projected_model(spec, backbone, tokenizer, config, llm_dir(config, "thinkrec"))
    return FusedSystem(model, prompt_builder(spec, prepared, tokenizer, config, llm_dir(config, "thinkrec")), experts,
                       ScoreSettings.from_config(config.llm))


def load_fused(prepared: PreparedData, config: Config, backbone=None, tokenizer=None) -> FusedSystem:
    """The shipped clustering and its experts."""
    return build_fused(prepared, config, load_experts(config), backbone, tokenizer)

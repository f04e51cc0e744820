"""Batched P(Yes) scoring of prepared rows by an LLM system."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from thinkrec.llm.lora_mixture import mixture
from thinkrec.llm.model import SoftTokenLM, collate
from thinkrec.llm.prompt import PromptBuilder


@torch.no_grad()
def score_rows(model: SoftTokenLM, builder: PromptBuilder, frame: pd.DataFrame, batch_size: int = 16,
               desc: str = "scoring", mixtures: np.ndarray | None = None, bf16: bool = False) -> np.ndarray:
    """P(Yes) for every row of ``frame``; rows of similar length are batched together.

    ``mixtures`` (rows x adapters) gives each row its own adapter weights for a model whose
    LoRA layers mix adapters (expert fusion). ``bf16`` runs the forward pass under bfloat16 autocast."""
    model.eval()
    prompts = [builder.encode_row(row) for _, row in frame.iterrows()]
    order = np.argsort([len(p) for p in prompts], kind="stable")
    scores = np.zeros(len(prompts))
    device = next(model.parameters()).device
    pad_id = builder.tokenizer.pad_token_id
    for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
        index = order[start:start + batch_size]
        batch = collate([prompts[i] for i in index], pad_id).to(device)
        routing = mixture(torch.as_tensor(mixtures[index])) if mixtures is not None else nullcontext()
        with routing, torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            scores[index] = model.p_yes(batch).float().cpu().numpy()
    return scores

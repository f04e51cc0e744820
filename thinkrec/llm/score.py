"""Batched P(Yes) scoring of prepared rows by an LLM system."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from thinkrec.llm.model import SoftTokenLM, collate
from thinkrec.llm.prompt import PromptBuilder


@torch.no_grad()
def score_rows(model: SoftTokenLM, builder: PromptBuilder, frame: pd.DataFrame, batch_size: int = 16,
               desc: str = "scoring") -> np.ndarray:
    """P(Yes) for every row of ``frame``; rows of similar length are batched together."""
    model.eval()
    prompts = [builder.encode_row(row) for _, row in frame.iterrows()]
    order = np.argsort([len(p) for p in prompts], kind="stable")
    scores = np.zeros(len(prompts))
    device = next(model.parameters()).device
    pad_id = builder.tokenizer.pad_token_id
    for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
        index = order[start:start + batch_size]
        batch = collate([prompts[i] for i in index], pad_id).to(device)
        scores[index] = model.p_yes(batch).float().cpu().numpy()
    return scores

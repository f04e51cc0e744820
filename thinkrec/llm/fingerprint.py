"""The digest that names a resumable LLM job's folder (``thinkrec.chunks``): everything that decides its results,
so that a rerun of the same job finds its saved chunks and any change starts afresh."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from thinkrec.llm.prompt import EncodedPrompt


def job_digest(model: nn.Module, prompts: list[EncodedPrompt], mixtures: np.ndarray | None, settings: dict) -> str:
    """A hex digest of what decides the results: every parameter and buffer of ``model``, each prompt (token
    ids, soft tokens, guest vector), the adapter mixtures and ``settings``."""
    digest = hashlib.sha256(repr(sorted(settings.items())).encode())
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    for prompt in prompts:
        digest.update(np.asarray(prompt.input_ids, dtype=np.int64).tobytes())
        digest.update(repr([(t.kind, t.index, t.user) for t in prompt.soft_tokens]).encode())
        digest.update(np.asarray(prompt.soft_positions, dtype=np.int64).tobytes())
        if prompt.guest is not None:
            digest.update(np.asarray(prompt.guest.vector, dtype=np.float64).tobytes())
            digest.update(np.float64(prompt.guest.bias).tobytes())
    if mixtures is not None:
        digest.update(np.ascontiguousarray(mixtures, dtype=np.float64).tobytes())
    return digest.hexdigest()

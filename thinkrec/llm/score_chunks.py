"""Scores saved chunk by chunk, so that a long scoring run, killed or stopped at a deadline, continues
where it stopped.

A job's folder is named after a digest of everything that decides its scores (the model's tensors,
the prompts in their order, the adapter mixtures and the scoring settings): rerunning the same job
finds its chunks, and any change starts a fresh folder instead of reusing stale scores. Each chunk
is one small parquet file (the rows' positions in the scored frame, their P(Yes) and the seconds the
chunk took), written under a temporary name and renamed, so a kill never leaves half a chunk behind.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from thinkrec.llm.prompt import EncodedPrompt

log = logging.getLogger(__name__)


def job_digest(model: nn.Module, prompts: list[EncodedPrompt], mixtures: np.ndarray | None, settings: dict) -> str:
    """A hex digest of what decides the scores: every parameter and buffer of ``model``, each prompt (token
    ids, soft tokens, guest vector), the mixtures and ``settings``."""
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


class ScoreChunks:
    """The saved chunks of one scoring job, ``chunk_00000.parquet`` ... in ``folder``."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, number: int) -> Path:
        return self.folder / f"chunk_{number:05d}.parquet"

    def load(self, number: int, rows: np.ndarray) -> tuple[np.ndarray, float] | None:
        """The saved scores of chunk ``number`` (rows in the order of ``rows``) and the seconds they took; None
        when it is not saved, cannot be read or holds other rows (it is then scored again)."""
        path = self.path(number)
        if not path.exists():
            return None
        try:
            saved = pd.read_parquet(path)
        except Exception as err:  # a damaged file: pyarrow raises several error types
            log.warning("%s: unreadable (%s); scoring the chunk again", path, err)
            return None
        if not np.array_equal(saved["row"].to_numpy(), rows):
            log.warning("%s: holds other rows than this job's chunk %d; scoring it again", path, number)
            return None
        return saved["p_yes"].to_numpy(), float(saved["seconds"].iloc[0])

    def save(self, number: int, rows: np.ndarray, scores: np.ndarray, seconds: float) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(number)
        partial = path.with_name(path.name + ".partial")
        pd.DataFrame({"row": np.asarray(rows, dtype=np.int64), "p_yes": np.asarray(scores, dtype=np.float64),
                      "seconds": float(seconds)}).to_parquet(partial, index=False)
        partial.replace(path)

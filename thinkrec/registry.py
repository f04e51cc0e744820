"""Every recommender compared here, named once: its key, display label, kind and checkpoint folder.

Adding a system means one entry in ``SYSTEMS``. The order is the order tables show them in: the
System-1 encoders from the floor up, then the LLMs from the untrained backbone to ThinkRec.
(How an LLM system is built, its prompt and training, is ``thinkrec.llm.systems``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from thinkrec.config import Config

SYSTEM_1, LLM, FUSED = "System-1", "LLM", "fused"


@dataclass(frozen=True)
class System:
    """One recommender: ``folder`` is where its model and predictions live, under ``checkpoints/``."""

    key: str
    label: str
    kind: str  # SYSTEM_1, LLM or FUSED
    folder: str
    writes_text: bool  # it can explain its answer in words
    baseline: bool = False  # ThinkRec-fused is held against it in the paper's claim


SYSTEMS = (
    System("item_prior", "Item like-rate (floor)", SYSTEM_1, "cf", writes_text=False),
    System("mf", "MF", SYSTEM_1, "cf/mf", writes_text=False, baseline=True),
    System("lightgcn", "LightGCN", SYSTEM_1, "cf/lightgcn", writes_text=False, baseline=True),
    System("sasrec", "SASRec", SYSTEM_1, "cf/sasrec", writes_text=False, baseline=True),
    System("zeroshot", "Zero-shot LLM", LLM, "llm/zeroshot", writes_text=True),
    System("tallrec", "TALLRec-style", LLM, "llm/tallrec", writes_text=True, baseline=True),
    System("collm", "CoLLM-style", LLM, "llm/collm", writes_text=True, baseline=True),
    System("thinkrec", "ThinkRec-global", LLM, "llm/thinkrec", writes_text=True),
    System("fused", "ThinkRec-fused", FUSED, "llm/experts", writes_text=True),  # the global adapter's experts
)
_BY_KEY = {system.key: system for system in SYSTEMS}


def system(key: str) -> System:
    if key not in _BY_KEY:
        raise ValueError(f"unknown system {str(key)[:40]!r}; choose from {', '.join(_BY_KEY)}")
    return _BY_KEY[key]


def keys(*kinds: str) -> tuple[str, ...]:
    """The keys of the systems of ``kinds`` (every system when none is named), in table order."""
    return tuple(s.key for s in SYSTEMS if not kinds or s.kind in kinds)


def label(key: str) -> str:
    return system(key).label


def folder(config: Config, key: str) -> Path:
    """Where the system's checkpoint lives: ``checkpoints/cf/<key>``, ``llm/<key>`` or, fused, ``llm/experts``."""
    return config.paths.checkpoints / system(key).folder

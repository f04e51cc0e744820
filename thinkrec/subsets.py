"""The fixed row subsets models are chosen and compared on (same seed, same rows for every system)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from thinkrec.config import Config
from thinkrec.data.prepared import PreparedData


def of_users(frame: pd.DataFrame, users: np.ndarray | None) -> pd.DataFrame:
    return frame if users is None else frame[frame["user"].isin(users)].reset_index(drop=True)


def valid_subset(prepared: PreparedData, config: Config, users: np.ndarray | None = None) -> pd.DataFrame:
    valid = of_users(prepared.split("valid"), users)
    return valid.sample(n=min(config.llm.valid_rows, len(valid)), random_state=config.llm.seed)


def test_subset(prepared: PreparedData, config: Config) -> pd.DataFrame:
    """The fixed test rows every LLM system is scored on (same seed, same rows)."""
    test = prepared.split("test")
    return test.sample(n=min(config.llm.eval_rows, len(test)), random_state=config.llm.seed)

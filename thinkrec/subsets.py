"""The fixed row subsets models are chosen and compared on (same seed, same rows for every system)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from thinkrec.config import Config, ConfigError
from thinkrec.data.prepared import PreparedData


def of_users(frame: pd.DataFrame, users: np.ndarray | None) -> pd.DataFrame:
    return frame if users is None else frame[frame["user"].isin(users)].reset_index(drop=True)


def valid_subset(prepared: PreparedData, config: Config, users: np.ndarray | None = None) -> pd.DataFrame:
    """The rows models are selected on: ``valid_rows`` random valid rows, or (``valid_sample`` =
    "per_user") one random valid row of every user, so that every user counts once."""
    if config.llm.valid_sample not in ("rows", "per_user"):
        raise ConfigError(f"llm.valid_sample must be 'rows' or 'per_user', not {config.llm.valid_sample!r}")
    valid = of_users(prepared.split("valid"), users)
    if config.llm.valid_sample == "per_user":
        return valid.groupby("user", sort=True).sample(n=1, random_state=config.llm.seed)
    return valid.sample(n=min(config.llm.valid_rows, len(valid)), random_state=config.llm.seed)


def test_subset(prepared: PreparedData, config: Config) -> pd.DataFrame:
    """The fixed test rows every LLM system is scored on (same seed, same rows)."""
    test = prepared.split("test")
    return test.sample(n=min(config.llm.eval_rows, len(test)), random_state=config.llm.seed)


EVAL_SCOPES = ("subset", "all")


def test_rows(prepared: PreparedData, config: Config) -> pd.DataFrame:
    """The test rows the LLM systems are scored on: the fixed subset (``llm.eval_scope`` = "subset") or
    every row of the test split ("all")."""
    if config.llm.eval_scope not in EVAL_SCOPES:
        raise ConfigError(f"llm.eval_scope must be one of {', '.join(EVAL_SCOPES)}, not {config.llm.eval_scope!r}")
    return test_subset(prepared, config) if config.llm.eval_scope == "subset" else prepared.split("test")

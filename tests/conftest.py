"""Shared fixtures: a tiny RecBole dataset and a configuration that points at it."""

from __future__ import annotations

from pathlib import Path

import pytest

from thinkrec.config import Config, load_config

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def tiny_config(tmp_path: Path) -> Config:
    """Settings for the 4-user, 6-item fixture, writing into a temporary folder."""
    return load_config(overrides=[
        f"paths.work_dir={tmp_path / 'work'}",
        f"paths.checkpoints_dir={tmp_path / 'checkpoints'}",
        f"data.data_dir={FIXTURES / 'tiny'}",
        "data.dataset=tiny",
        "data.history_len=4",
        "data.min_item_support=1",
    ])


@pytest.fixture
def tiny_prepared(tiny_config):
    from thinkrec.data.prepared import prepare_dataset

    return prepare_dataset(tiny_config)


@pytest.fixture
def tiny_explorer(tiny_config, tiny_prepared):
    """An Explorer over the tiny dataset with quickly trained System-1 encoders."""
    from thinkrec.cf.store import train_all_cf
    from thinkrec.explorer import Explorer

    for name in tiny_config.cf.models:
        grid = getattr(tiny_config.cf, name)
        grid.dims, grid.learning_rates, grid.weight_decays, grid.max_epochs, grid.batch_size = (8,), (0.05,), (0.0,), 2, 16
    train_all_cf(tiny_prepared, tiny_config)
    return Explorer.load(tiny_config)

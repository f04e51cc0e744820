"""The fixed subsets models are selected and compared on."""

from __future__ import annotations

import pytest

from thinkrec.config import ConfigError
from thinkrec.subsets import valid_subset


def test_one_valid_row_per_user_covers_every_user_once(tiny_prepared, tiny_config):
    tiny_config.llm.valid_sample = "per_user"
    rows = valid_subset(tiny_prepared, tiny_config)
    valid = tiny_prepared.split("valid")
    assert sorted(rows["user"]) == sorted(valid["user"].unique())
    assert valid_subset(tiny_prepared, tiny_config).equals(rows)  # seeded


def test_an_unknown_valid_sample_is_named(tiny_prepared, tiny_config):
    tiny_config.llm.valid_sample = "everything"
    with pytest.raises(ConfigError, match="valid_sample"):
        valid_subset(tiny_prepared, tiny_config)

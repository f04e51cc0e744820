"""Settings: defaults written once, overrides from the command line, clear errors."""

from __future__ import annotations

import pytest

from thinkrec.config import ConfigError, GateSettings, load_config


def test_the_gate_settings_have_one_set_of_defaults():
    assert load_config().fusion.gate == GateSettings()


def test_a_gate_setting_is_overridden_without_changing_the_others():
    config = load_config(overrides=["fusion.gate.tau=0.3"])
    assert config.fusion.gate == GateSettings(tau=0.3)
    assert load_config().fusion.gate.tau == GateSettings().tau  # the defaults are untouched


@pytest.mark.parametrize("override, named", [("fusion.gate.tau=0", "gate tau"),
                                             ("fusion.gate.entropy_ratio=2", "gate entropy_ratio"),
                                             ("fusion.gate.temperature=1", "fusion.gate.temperature")])
def test_a_bad_gate_setting_is_named(override, named):
    with pytest.raises(ConfigError, match=named):
        load_config(overrides=[override])

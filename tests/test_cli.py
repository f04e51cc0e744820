"""The command line: each LLM stage gets its own options, and ``--max-minutes`` one time box for the command."""

from __future__ import annotations

import pytest

from thinkrec import cli, pipeline
from thinkrec.config import ConfigError


@pytest.fixture
def calls(monkeypatch):
    """The stage calls ``cli.main`` makes, with the models and data left out."""
    made = []
    monkeypatch.setattr(cli, "prepare_dataset", lambda config: "prepared")
    for stage in ("stage_eval_llm", "stage_reasoning", "stage_eval_fused"):
        monkeypatch.setattr(pipeline, stage, lambda *args, stage=stage, **kwargs: made.append((stage, args, kwargs))
                            or {"finished": True})
    return made


def minutes_left(call) -> float:
    return call[2]["timebox"].minutes_left() if "timebox" in call[2] else call[1][3].minutes_left()


def test_eval_stages_are_time_boxed_with_one_box(calls):
    assert cli.main(["--set", "llm.eval_scope=all", "eval-llm", "thinkrec", "collm", "--max-minutes", "2"]) == 0
    boxes = {id(kwargs["timebox"]) for _, _, kwargs in calls}
    assert [args[0] for _, args, _ in calls] == ["thinkrec", "collm"] and len(boxes) == 1
    assert 1.9 < minutes_left(calls[0]) <= 2.0
    assert calls[0][1][2].llm.eval_scope == "all"
    assert cli.main(["eval-fused", "--max-minutes", "1"]) == 0 and calls[-1][0] == "stage_eval_fused"
    assert 0.9 < minutes_left(calls[-1]) <= 1.0
    assert cli.main(["eval-llm", "zeroshot"]) == 0 and calls[-1][2]["timebox"] is None


def test_eval_reasoning_is_time_boxed_only_when_asked(calls):
    assert cli.main(["eval-reasoning", "thinkrec"]) == 0
    assert calls == [("stage_reasoning", ("thinkrec", "prepared", calls[0][1][2]),
                      {"force": False, "timebox": None, "rules": True})]
    assert cli.main(["eval-reasoning", "fused", "--max-minutes", "3", "--no-rules"]) == 0
    assert 2.9 < minutes_left(calls[-1]) <= 3.0 and calls[-1][2]["rules"] is False


def test_a_time_box_must_be_positive():
    assert cli.time_box(None) is None
    with pytest.raises(ConfigError, match="--max-minutes must be positive"):
        cli.time_box(0)

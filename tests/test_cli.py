"""The command line: each LLM stage gets its own options, and a time box becomes one deadline for the command."""

from __future__ import annotations

import time

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


def test_eval_stages_are_time_boxed_with_one_deadline(calls):
    started = time.perf_counter()
    assert cli.main(["--set", "llm.eval_scope=all", "eval-llm", "thinkrec", "collm", "--max-minutes", "2"]) == 0
    deadlines = {kwargs["deadline"] for _, _, kwargs in calls}
    assert [args[0] for _, args, _ in calls] == ["thinkrec", "collm"] and len(deadlines) == 1
    assert started + 119 < deadlines.pop() < time.perf_counter() + 121
    assert calls[0][1][2].llm.eval_scope == "all"
    assert cli.main(["eval-fused", "--max-minutes", "1"]) == 0 and calls[-1][0] == "stage_eval_fused"
    assert cli.main(["eval-llm", "zeroshot"]) == 0 and calls[-1][2]["deadline"] is None


def test_eval_reasoning_runs_without_a_time_box(calls):
    assert cli.main(["eval-reasoning", "thinkrec"]) == 0
    assert calls == [("stage_reasoning", ("thinkrec", "prepared", calls[0][1][2]), {"force": False})]


def test_a_time_box_must_be_positive():
    assert cli.deadline(None) is None
    with pytest.raises(ConfigError, match="--max-minutes must be positive"):
        cli.deadline(0)

"""The report's one-sentence verdict on the paper's claim is computed from paired user-bootstrap intervals,
not written by hand."""

import numpy as np
import pandas as pd

from thinkrec.config import AnalysisConfig
from thinkrec.intervals import system_intervals
from thinkrec.report import _table, interval_text, target_verdict

SETTINGS = AnalysisConfig(resamples=300, seed=1)


def predictions(fused_noise: float, users: int = 150) -> pd.DataFrame:
    """LightGCN and CoLLM-style see the label through noise 1.0; ThinkRec-fused through ``fused_noise``."""
    rng = np.random.default_rng(0)
    user = np.repeat(np.arange(users), 6)
    label = rng.integers(0, 2, len(user))
    base = label + rng.normal(0, 1.0, len(user))
    return pd.DataFrame({"user": user, "label": label, "lightgcn": base, "collm": base + rng.normal(0, 0.3, len(user)),
                         "fused": label + rng.normal(0, fused_noise, len(user)) if fused_noise else base})


def verdict_of(table: pd.DataFrame) -> str:
    overall = system_intervals(table, [c for c in ("lightgcn", "collm", "fused") if c in table], "lightgcn",
                               SETTINGS.resamples, SETTINGS.seed)
    lines = target_verdict(table, overall, "lightgcn", SETTINGS)
    return lines[1] if lines else ""


def test_a_clearly_better_fused_model_beats_both_baselines():
    text = verdict_of(predictions(0.3))
    assert "ThinkRec-fused (AUC 0." in text and "beats the best System-1 model, LightGCN (AUC difference +0." in text
    assert "beats the best LLM baseline, CoLLM-style (+0." in text and "resampling 150 users" in text


def test_the_same_scores_are_level_with_the_reference():
    text = verdict_of(predictions(0.0))
    assert "is level with the best System-1 model, LightGCN (AUC difference +0.0000, 95% interval " \
           "[+0.0000, +0.0000])" in text


def test_no_fused_model_no_sentence():
    assert verdict_of(predictions(0.3).drop(columns="fused")) == ""


def test_a_missing_figure_reads_n_a_not_nan():
    header, rule, row = _table(["system", "verdict agreement", "rows"], [["TALLRec-style", float("nan"), 100]])
    assert row == "| TALLRec-style | n/a | 100 |"
    assert interval_text(float("nan"), 0.1) == "n/a" and interval_text(-0.01, 0.02, sign=True) == "[-0.0100, +0.0200]"


def test_a_refined_system_reports_each_run_it_grew_from():
    from thinkrec.report import per_run, training_runs

    first = {"train_tokens": 5_400_000, "train_examples": 12_000, "seconds": 50_000.0}
    refined = {"train_tokens": 700_000, "train_examples": 1_400, "seconds": 6_000.0,
               "earlier": {"init_from": "starts/thinkrec_v1", **first}}
    runs = training_runs(refined)[::-1]
    assert [run["train_tokens"] for run in runs] == [5_400_000, 700_000]
    assert per_run(runs, "train_tokens") == "5,400,000 + 700,000"
    assert per_run([first], "train_tokens") == 5_400_000  # one run: the bare figure

"""The report's one-sentence verdict on the paper's claim is computed, not written by hand."""

import pandas as pd

from thinkrec.report import _table, target_verdict


def subset(fused_auc: float) -> pd.DataFrame:
    return pd.DataFrame({"system": ["MF", "LightGCN", "CoLLM-style", "ThinkRec-fused"],
                         "key": ["mf", "lightgcn", "collm", "fused"], "auc": [0.80, 0.83, 0.82, fused_auc]})


def test_the_verdict_names_the_best_baseline_and_whether_fused_beats_it():
    assert "does not beat the best baseline, LightGCN (0.8300)" in target_verdict(subset(0.8174))[1]
    assert "(subset AUC 0.8400) beats the best baseline, LightGCN" in target_verdict(subset(0.84))[1]
    assert target_verdict(subset(0.8).query("key != 'fused'")) == []


def test_a_missing_figure_reads_n_a_not_nan():
    header, rule, row = _table(["system", "verdict agreement", "rows"], [["TALLRec-style", float("nan"), 100]])
    assert row == "| TALLRec-style | n/a | 100 |"

"""The analysts' filters, curated cases and CSV export on a hand-made case table."""

from __future__ import annotations

import pandas as pd
import pytest

from demo import analysis


@pytest.fixture
def cases():
    return pd.DataFrame({
        "user_id": ["1", "1", "2", "2", "3"], "item_id": ["10", "11", "10", "12", "13"],
        "title": ["A", "B", "A", "=HYPERLINK(1)", "C"], "liked": [True, False, True, False, True],
        "cluster": [1, 1, 2, 2, 1],
        "lightgcn": [0.9, 0.8, 0.3, 0.2, 0.6], "fused": [0.95, 0.3, 0.6, 0.9, 0.45]})


def test_default_pair_prefers_fused_and_lightgcn(cases):
    assert analysis.default_pair(cases) == ("fused", "lightgcn")
    assert analysis.default_pair(cases.drop(columns="fused")) == ("lightgcn", None)


def test_errors_correct_and_disagreements(cases):
    errors = analysis.filter_cases(cases, "fused", "lightgcn", "errors", "all", 0)
    assert errors["item_id"].tolist() == ["12", "13"] and not errors["fused right"].any()
    correct = analysis.filter_cases(cases, "fused", "lightgcn", "correct", None, 0)
    assert correct["item_id"].tolist() == ["10", "11", "10"]
    disagree = analysis.filter_cases(cases, "fused", "lightgcn", "disagreements", "all", 0)
    assert list(zip(disagree["user_id"], disagree["item_id"])) == [("1", "11"), ("2", "10"), ("2", "12"), ("3", "13")]
    assert "P(like) ThinkRec-fused" in disagree.columns and "P(like) LightGCN" in disagree.columns


def test_cluster_and_confidence_filters(cases):
    assert analysis.filter_cases(cases, "fused", None, "all cases", "2", 0)["user_id"].tolist() == ["2", "2"]
    sure = analysis.filter_cases(cases, "fused", None, "all cases", "all", 0.5)
    assert sure["item_id"].tolist() == ["10", "12"]  # |2p - 1| >= 0.5 only for p = 0.95 and 0.9


def test_bad_filters_are_refused(cases):
    with pytest.raises(ValueError, match="show must be"):
        analysis.filter_cases(cases, "fused", None, "everything", "all", 0)
    with pytest.raises(ValueError, match="no stored predictions"):
        analysis.filter_cases(cases, "sasrec", None, "all cases", "all", 0)


def test_curated_cases_are_distinct_and_labelled(cases):
    curated = analysis.curated_cases(cases, per_kind=1)
    values = [value for _, value in curated]
    assert len(values) == len(set(values))
    labels = {v: k for k, v in curated}
    assert labels["1|10"].startswith("Clear hit")
    assert labels["1|11"].startswith("ThinkRec-fused right, LightGCN wrong")
    assert labels["2|12"].startswith("LightGCN right, ThinkRec-fused wrong")
    assert labels["3|13"].startswith("Instructive error")
    assert analysis.curated_cases(cases.drop(columns=["fused", "lightgcn"])) == []


def test_export_defuses_spreadsheet_formulas(cases, tmp_path):
    path = analysis.export_csv(cases, tmp_path)
    text = path.read_text(encoding="utf-8")
    assert "'=HYPERLINK(1)" in text and path.parent == tmp_path
    assert pd.read_csv(path)["user_id"].astype(str).tolist() == cases["user_id"].tolist()

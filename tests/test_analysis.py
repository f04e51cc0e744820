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
        "cluster": ["1", "1", "2", "2", "1"],
        "genre": [["Drama"], ["Drama", "Comedy"], ["Drama"], ["Horror"], ["Comedy"]],
        "lightgcn": [0.9, 0.8, 0.3, 0.2, 0.6], "fused": [0.95, 0.3, 0.6, 0.9, 0.45]})


def test_default_pair_prefers_fused_and_lightgcn(cases):
    assert analysis.default_pair(cases) == ("fused", "lightgcn")
    assert analysis.default_pair(cases.drop(columns="fused")) == ("lightgcn", None)


def test_wrong_right_and_disagreements(cases):
    errors = analysis.filter_cases(cases, "fused", "lightgcn", "wrong answers", 0)
    assert errors["item_id"].tolist() == ["12", "13"] and not errors["fused right"].any()
    correct = analysis.filter_cases(cases, "fused", "lightgcn", "right answers", 0)
    assert correct["item_id"].tolist() == ["10", "11", "10"]
    disagree = analysis.filter_cases(cases, "fused", "lightgcn", "disagreements", 0)
    # surest first: |2p - 1| of ThinkRec-fused is 0.8, 0.4, 0.2, 0.1
    assert list(zip(disagree["user_id"], disagree["item_id"])) == [("2", "12"), ("1", "11"), ("2", "10"), ("3", "13")]
    assert "P(like) ThinkRec-fused" in disagree.columns and "P(like) LightGCN" in disagree.columns


def test_slice_and_confidence_filters(cases):
    assert analysis.filter_cases(cases, "fused", None, "all cases", 0, "cluster", "2")["user_id"].tolist() == ["2", "2"]
    comedy = analysis.filter_cases(cases, "fused", None, "all cases", 0, "genre", "Comedy")
    assert comedy["item_id"].tolist() == ["11", "13"] and comedy["genre"].tolist() == ["Drama, Comedy", "Comedy"]
    sure = analysis.filter_cases(cases, "fused", None, "all cases", 0.5, "cluster", "all")
    assert sure["item_id"].tolist() == ["10", "12"]  # |2p - 1| >= 0.5 only for p = 0.95 and 0.9


def test_probabilities_show_three_decimals(cases):
    shown = analysis.filter_cases(cases.assign(fused=cases["fused"] + 0.00049), "fused", "lightgcn", "all cases", 0)
    assert shown["P(like) ThinkRec-fused"].tolist() == [0.95, 0.9, 0.3, 0.6, 0.45]  # surest first
    assert shown["P(like) ThinkRec-fused"].dtype.kind == "f"  # numbers, so the table sorts by value


def test_bad_filters_are_refused(cases):
    with pytest.raises(ValueError, match="show must be"):
        analysis.filter_cases(cases, "fused", None, "everything", 0)
    with pytest.raises(ValueError, match="no stored predictions"):
        analysis.filter_cases(cases, "sasrec", None, "all cases", 0)
    with pytest.raises(ValueError, match="unknown slice 'zodiac'"):
        analysis.filter_cases(cases, "fused", None, "all cases", 0, "zodiac", "Leo")


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


def test_slice_chart_draws_each_interval_as_error_bars():
    from demo.charts import reliability_chart, slice_auc_chart

    metrics = pd.DataFrame({"value": ["< 25", "25+", "< 25", "25+"], "order": [0, 1, 0, 1],
                            "system": ["mf", "mf", "fused", "fused"], "rows": [10, 20, 10, 20], "users": [5, 9, 5, 9],
                            "auc": [0.7, 0.8, 0.6, 0.9], "auc_low": [0.6, 0.75, 0.5, 0.85],
                            "auc_high": [0.75, 0.9, 0.7, 0.95]})
    chart = slice_auc_chart(metrics, ["fused", "mf"], {"fused": "ThinkRec-fused", "mf": "MF"}.get, "activity")
    fused = chart.data[0]
    assert fused.name == "ThinkRec-fused" and list(fused.x) == ["< 25", "25+"]
    assert list(fused.error_y.array) == pytest.approx([0.1, 0.05]) and list(fused.error_y.arrayminus) == \
        pytest.approx([0.1, 0.05])
    bins = pd.DataFrame({"system": ["mf"] * 2, "bin": [0, 1], "low": [0, 0.5], "high": [0.5, 1], "rows": [0, 4],
                         "mean_p": [float("nan"), 0.8], "like_rate": [float("nan"), 0.75]})
    diagram = reliability_chart(bins, ["mf"], {"mf": 0.05}, {"mf": "MF"}.get)
    assert diagram.data[1].name == "MF (ECE 0.050)" and list(diagram.data[1].x) == [0.8]  # empty bins left out

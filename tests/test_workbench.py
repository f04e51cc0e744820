"""The analysts' workbench: slices, calibration, disagreements and confusion against hand-computed values,
and the stored files read back as written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from thinkrec.config import AnalysisConfig
from thinkrec.errors import CheckpointError
from thinkrec.metrics import auc
from thinkrec.workbench import (
    age_bands,
    bin_labels,
    binned,
    build_workbench,
    calibration_errors,
    confusion,
    disagreements,
    expected_calibration_error,
    load_workbench,
    reliability_bins,
    row_table,
    save_workbench,
    slice_metrics,
)

SETTINGS = AnalysisConfig(resamples=200, seed=3)


def test_bins_are_named_and_ordered():
    assert bin_labels((25, 50)) == ["< 25", "25-49", "50+"]
    bins = binned(np.array([3, 25, 49, 50, 600]), (25, 50))
    assert list(bins) == ["< 25", "25-49", "25-49", "50+", "50+"] and bins.ordered
    with pytest.raises(ValueError, match="increasing"):
        bin_labels((50, 25))


def test_age_bands_follow_movielens_1m():
    bands = age_bands(pd.Series(["17", "18", "24", "25", "56", "x"]), (18, 25, 35, 45, 50, 56))
    assert list(bands) == ["under 18", "18-24", "18-24", "25-34", "56+", "unknown"]


def test_reliability_bins_and_ece_by_hand():
    labels, scores = [1, 0, 1, 1, 0], [0.05, 0.15, 0.12, 0.95, 1.0]
    table = reliability_bins(labels, scores, 10).set_index("bin")
    assert table["rows"].tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]  # 1.0 falls in the last bin
    assert table.loc[1, "mean_p"] == pytest.approx(0.135) and table.loc[1, "like_rate"] == pytest.approx(0.5)
    assert table.loc[9, "mean_p"] == pytest.approx(0.975) and np.isnan(table.loc[4, "mean_p"])
    # gaps 0.95, 0.365, 0.475 weighted by 1, 2, 2 rows of 5
    assert expected_calibration_error(labels, scores, 10) == pytest.approx((0.95 + 2 * 0.365 + 2 * 0.475) / 5)
    assert expected_calibration_error([1, 0], [1.0, 0.0], 10) == pytest.approx(0.0)
    assert expected_calibration_error([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5], 2) == pytest.approx(0.0)


def rows_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": ["1", "1", "2", "2", "3", "3"], "item_id": ["a", "b", "c", "d", "e", "f"],
        "title": ["A", "B", "C", "D", "E", "F"], "liked": [True, False, True, False, True, False],
        "gender": ["M", "M", "F", "F", "M", "M"],
        "genre": [["Drama"], ["Drama", "Comedy"], ["Comedy"], ["Drama"], ["Comedy"], ["Comedy"]],
        "llm": [0.9, 0.6, 0.2, 0.1, 0.7, 0.4], "cf": [0.6, 0.4, 0.8, 0.3, 0.2, 0.5]})


def test_slice_metrics_by_hand():
    rows = rows_frame()
    frame = slice_metrics(rows, ["llm", "cf"], ["gender", "genre"], SETTINGS).set_index(["slice", "value", "system"])
    men = frame.loc[("gender", "M", "llm")]
    assert (men["rows"], men["users"]) == (4, 2)
    assert men["auc"] == pytest.approx(1.0)  # likes 0.9, 0.7 above dislikes 0.6, 0.4
    assert men["like_rate"] == pytest.approx(0.5) and men["mean_p"] == pytest.approx(0.65)
    assert frame.loc[("gender", "M", "cf"), "auc"] == pytest.approx(0.5)  # 0.6 > 0.4, 0.5; 0.2 below both
    comedy = frame.loc[("genre", "Comedy", "cf")]  # rows b, c, e, f: a row counts in each of its genres
    assert comedy["rows"] == 4 and comedy["auc"] == pytest.approx(auc([0, 1, 1, 0], [0.4, 0.8, 0.2, 0.5]))
    assert frame.loc[("genre", "Drama", "llm"), "rows"] == 3
    for record in frame.itertuples():
        assert record.auc_low <= record.auc + 1e-12 and record.auc <= record.auc_high + 1e-12
    assert list(dict.fromkeys(frame.loc["gender"].index.get_level_values("value"))) == ["F", "M"]


def test_calibration_errors_per_system():
    rows = rows_frame()
    errors = calibration_errors(rows, ["llm"], 2)
    # bin [0, .5): 0.2, 0.1, 0.4 with labels 1, 0, 0; bin [.5, 1]: 0.9, 0.6, 0.7 with labels 1, 0, 1
    assert errors["llm"] == pytest.approx((3 * abs(0.7 / 3 - 1 / 3) + 3 * abs(2.2 / 3 - 2 / 3)) / 6)


def test_disagreements_rank_by_gap_and_say_who_was_right():
    table = disagreements(rows_frame(), "llm", "cf", limit=3)
    assert table["item_id"].tolist() == ["c", "e", "a"]  # gaps 0.6, 0.5, 0.3 (then b, d at 0.2, f at 0.1)
    assert table["right"].tolist() == ["cf", "llm", "both"]
    assert table["gap"].tolist() == pytest.approx([0.6, 0.5, 0.3])
    with pytest.raises(ValueError, match="no stored predictions for 'nope'"):
        disagreements(rows_frame(), "llm", "nope", 3)


def test_confusion_by_hand():
    counts = confusion([1, 0, 1, 0, 1, 0], [0.9, 0.6, 0.2, 0.1, 0.7, 0.4], 0.5)
    assert (counts["tp"], counts["fp"], counts["fn"], counts["tn"]) == (2, 1, 1, 2)
    assert counts["accuracy"] == pytest.approx(4 / 6) and counts["precision"] == pytest.approx(2 / 3)
    assert counts["recall"] == pytest.approx(2 / 3)
    assert confusion([1, 0], [0.9, 0.6], 0.95)["tp"] == 0 and np.isnan(confusion([1, 0], [0.9, 0.6], 0.95)["precision"])
    with pytest.raises(ValueError, match="threshold"):
        confusion([1], [0.5], 1.5)


@pytest.fixture
def tiny_predictions(tiny_prepared):
    test = tiny_prepared.split("test")
    rng = np.random.default_rng(0)
    return test[["user", "item", "label"]].assign(lightgcn=rng.random(len(test)), fused=rng.random(len(test)))


def test_row_table_carries_every_slice(tiny_prepared, tiny_predictions):
    clusters, routes = np.array([0, 1, 1, 0]), np.array(["single", "global", "fused", "single"])
    rows = row_table(tiny_predictions, tiny_prepared, SETTINGS, clusters, routes)
    users = tiny_prepared.users.set_index("user")
    for row, (user, item) in zip(rows.itertuples(), tiny_predictions[["user", "item"]].itertuples(index=False)):
        assert row.user_id == users.loc[user, "user_id"] and row.cluster == str(clusters[user] + 1)
        assert row.gender == users.loc[user, "gender"] and row.routing == routes[user]
        assert row.genre == list(tiny_prepared.items.loc[item, "genres"])
    writer = rows[rows["user_id"] == "2"]
    assert set(writer["age"]) == {"50-55"} and set(writer["occupation"]) == {"writer"}
    assert set(rows["activity"]) == {"< 25"}  # a tiny dataset: every user has fewer than 25 train ratings
    assert rows.columns[:4].tolist() == ["user_id", "item_id", "title", "liked"]


def test_the_stored_workbench_reads_back_as_written(tiny_prepared, tiny_predictions, tmp_path):
    built = build_workbench(tiny_predictions, tiny_prepared, SETTINGS, np.array([0, 1, 1, 0]),
                            np.array(["single", "global", "fused", "single"]))
    save_workbench(built, tmp_path / "analysis")
    loaded = load_workbench(tmp_path / "analysis")
    for name in ("rows", "overall", "slices", "calibration"):
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(built, name), check_dtype=False)
    assert loaded.summary == built.summary and loaded.summary["reference"] == "lightgcn"
    assert loaded.slice_values("routing") == [v for v in ("single", "fused", "global")
                                             if v in set(built.rows["routing"])]
    genre = loaded.slice_values("genre")[0]
    assert len(loaded.rows_in("genre", genre)) == sum(genre in g for g in built.rows["genre"])
    assert len(loaded.rows_in("genre", "all")) == len(built.rows)
    with pytest.raises(ValueError, match="unknown slice"):
        loaded.rows_in("zodiac", "Leo")
    (tmp_path / "analysis" / "slices.parquet").unlink()
    with pytest.raises(CheckpointError, match="slices.parquet"):
        load_workbench(tmp_path / "analysis")

"""User-bootstrap intervals: the weighted AUC is sklearn's, planted differences are found, equal systems tie,
more users give narrower intervals, and the seed fixes every number."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from thinkrec.intervals import Interval, UserBootstrap, paired_difference, system_intervals, verdict
from thinkrec.metrics import uauc


def planted(users: int, seed: int = 0, rows_per_user: int = 8) -> pd.DataFrame:
    """Rows where ``good`` sees the label through little noise, ``weak`` through much, ``twin`` equals ``weak``."""
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(users), rows_per_user)
    label = rng.integers(0, 2, len(user))
    return pd.DataFrame({"user": user, "label": label,
                         "good": label + rng.normal(0, 0.5, len(user)),
                         "weak": label + rng.normal(0, 2.0, len(user))}).assign(twin=lambda t: t["weak"])


def test_resampled_auc_is_the_weighted_auc_of_the_drawn_users():
    table = planted(30)
    table["good"] = table["good"].round(1)  # ties count half, as in sklearn
    bootstrap = UserBootstrap(table["user"], 5, seed=3)
    aucs = bootstrap.aucs(table["label"], table["good"])
    for b in range(5):
        weights = bootstrap.counts[b][bootstrap.codes]
        assert aucs[b] == pytest.approx(roc_auc_score(table["label"], table["good"], sample_weight=weights))
    assert bootstrap.counts.sum(axis=1).tolist() == [30] * 5  # every resample draws as many users as there are


def test_resampled_mean_weighs_each_row_as_often_as_its_user_was_drawn():
    users, values = np.array([4, 4, 7, 9]), np.array([1.0, 3.0, 10.0, -2.0])
    bootstrap = UserBootstrap(users, 6, seed=2)
    means = bootstrap.means(values)
    for b in range(6):
        weights = bootstrap.counts[b][bootstrap.codes]
        assert means[b] == pytest.approx(np.average(values, weights=weights))
    with pytest.raises(ValueError, match="3 values for 4 rows"):
        bootstrap.means(values[:3])


def test_resampled_uauc_weighs_each_users_auc_by_its_draws():
    users, labels, scores = [1, 1, 2, 2, 3], [1, 0, 0, 1, 1], [0.9, 0.2, 0.8, 0.3, 0.5]
    bootstrap = UserBootstrap(users, 4, seed=1)
    per_user = np.array([1.0, 0.0])  # user 1 ranks right, user 2 wrong, user 3 has one class
    counts = bootstrap.counts[:, :2]
    expected = np.where(counts.sum(1) > 0, counts @ per_user / np.maximum(counts.sum(1), 1), np.nan)
    np.testing.assert_allclose(bootstrap.uaucs(users, labels, scores), expected)
    assert uauc(users, labels, scores) == pytest.approx(0.5)


def test_a_clearly_better_system_beats_and_a_worse_one_is_below():
    table = planted(200)
    frame = system_intervals(table, ["good", "weak"], "weak", 300, seed=7).set_index("key")
    assert frame.loc["good", "auc_low"] <= frame.loc["good", "auc"] <= frame.loc["good", "auc_high"]
    assert frame.loc["good", "auc_diff_low"] > 0 and frame.loc["good", "verdict"] == "beats"
    assert paired_difference(table, "weak", "good", 300, seed=7).high < 0
    assert verdict(paired_difference(table, "weak", "good", 300, seed=7)) == "below"


def test_identical_systems_are_level_with_a_zero_width_difference():
    table = planted(100)
    difference = paired_difference(table, "twin", "weak", 200, seed=1)
    assert (difference.estimate, difference.low, difference.high) == (0.0, 0.0, 0.0)
    assert verdict(difference) == "level with"


def test_verdict_reads_the_interval():
    assert verdict(Interval(0.01, 0.002, 0.03)) == "beats"
    assert verdict(Interval(-0.01, -0.03, -0.001)) == "below"
    assert verdict(Interval(0.0, -0.01, 0.01)) == "level with"
    assert verdict(Interval(math.nan, math.nan, math.nan)) == "n/a"


def test_more_users_give_a_narrower_interval():
    widths = []
    for users in (40, 400):
        frame = system_intervals(planted(users, seed=5), ["weak"], "good", 400, seed=2).iloc[0]
        widths.append((frame["auc_high"] - frame["auc_low"], frame["auc_diff_high"] - frame["auc_diff_low"]))
    assert widths[1][0] < widths[0][0] / 2 and widths[1][1] < widths[0][1] / 2  # about 1 / sqrt(10)


def test_the_seed_fixes_every_number_and_row_order_does_not_matter():
    table = planted(60)
    first = system_intervals(table, ["good", "weak"], "weak", 200, seed=11)
    again = system_intervals(table, ["good", "weak"], "weak", 200, seed=11)
    shuffled = system_intervals(table.sample(frac=1, random_state=0), ["good", "weak"], "weak", 200, seed=11)
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(first, shuffled, atol=1e-12)
    other = system_intervals(table, ["good", "weak"], "weak", 200, seed=12)
    assert not np.isclose(first["auc_low"], other["auc_low"]).all()


def test_bad_input_is_refused_with_a_message():
    table = planted(5)
    with pytest.raises(ValueError, match="no P\\(like\\) column for nope"):
        system_intervals(table, ["nope"], None, 10, seed=0)
    with pytest.raises(ValueError, match="at least one resample"):
        UserBootstrap(table["user"], 0, seed=0)
    with pytest.raises(ValueError, match="confidence"):
        UserBootstrap(table["user"], 10, seed=0, confidence=95)


def test_one_class_rows_have_no_interval():
    bootstrap = UserBootstrap([1, 2], 10, seed=0)
    assert np.isnan(bootstrap.aucs([1, 1], [0.2, 0.3])).all()
    interval = bootstrap.interval(math.nan, bootstrap.aucs([1, 1], [0.2, 0.3]))
    assert math.isnan(interval.low) and verdict(interval) == "n/a"

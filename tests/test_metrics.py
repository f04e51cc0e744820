"""AUC and UAUC against values computed by hand."""

from __future__ import annotations

import math

import pytest

from thinkrec.metrics import auc, auc_report, uauc


def test_auc_by_hand():
    # Positives 0.8, 0.4; negatives 0.6, 0.2: pairs won 1 + 1 + 0 + 1 = 3 of 4.
    assert auc([1, 1, 0, 0], [0.8, 0.4, 0.6, 0.2]) == pytest.approx(0.75)
    # A tie counts half: positive 0.5 vs negative 0.5.
    assert auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)


def test_auc_single_class_is_nan():
    assert math.isnan(auc([1, 1], [0.2, 0.3]))


def test_uauc_averages_users_with_both_classes():
    users = [7, 7, 7, 3, 3, 9]
    labels = [1, 0, 0, 1, 0, 1]
    scores = [0.9, 0.1, 0.95, 0.2, 0.4, 0.5]
    # User 7: positive 0.9 beats 0.1, loses to 0.95 -> 0.5. User 3: 0.2 < 0.4 -> 0. User 9: one class, skipped.
    assert uauc(users, labels, scores) == pytest.approx(0.25)
    report = auc_report(users, labels, scores)
    assert report["rows"] == 6 and report["uauc"] == 0.25

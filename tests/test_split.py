"""Chronological splits and history rows: sizes, order and no leakage from the future."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from thinkrec.data.split import PAD, build_rows, split_per_user


def frame(users, times, items=None, labels=None):
    n = len(users)
    return pd.DataFrame({"user": users, "item": items if items is not None else np.arange(n),
                         "label": labels if labels is not None else np.ones(n, dtype=int),
                         "rating": np.full(n, 4.0), "timestamp": np.asarray(times, dtype=float)})


def test_per_user_split_takes_the_latest_to_test():
    # User 0 has 20 interactions (16/2/2), user 1 has 5 (4/1/0: ceil cuts at 4 and 5).
    users = [0] * 20 + [1] * 5
    times = list(range(20, 0, -1)) + [5, 1, 4, 2, 3]
    data = frame(users, times)
    split = split_per_user(data, 0.1, 0.1)
    data["split"] = split
    zero = data[data.user == 0].sort_values("timestamp")
    assert zero["split"].tolist() == ["train"] * 16 + ["valid"] * 2 + ["test"] * 2
    one = data[data.user == 1].sort_values("timestamp")
    assert one["split"].tolist() == ["train"] * 4 + ["valid"]


def test_no_history_item_is_later_than_its_target(tiny_prepared):
    """Brute force: each history equals the latest interactions strictly before the target."""
    rows = tiny_prepared.rows
    by_user = rows.groupby("user")
    checked = 0
    for _, row in rows.iterrows():
        earlier = by_user.get_group(row.user)
        earlier = earlier[earlier.timestamp < row.timestamp].sort_values("timestamp", kind="stable")
        expected = earlier.tail(len(row.hist_items))
        real = [i for i in row.hist_items if i != PAD]
        assert real == expected["item"].tolist()
        checked += len(real)
    assert checked > 0


def test_same_second_interactions_do_not_see_each_other():
    data = frame([0, 0, 0], [1, 2, 2], items=[10, 11, 12], labels=[1, 0, 1])
    rows = build_rows(data, np.array(["train"] * 3, dtype=object), history_len=3)
    assert rows["hist_items"][1].tolist() == [PAD, PAD, 10]
    assert rows["hist_items"][2].tolist() == [PAD, PAD, 10]
    assert rows["hist_labels"][0].tolist() == [PAD, PAD, PAD]


def test_history_keeps_the_latest_and_labels():
    data = frame([0] * 5, [1, 2, 3, 4, 5], items=[1, 2, 3, 4, 5], labels=[1, 0, 1, 0, 1])
    rows = build_rows(data, np.array(["train"] * 5, dtype=object), history_len=2)
    assert rows["hist_items"][4].tolist() == [3, 4]
    assert rows["hist_labels"][4].tolist() == [1, 0]


def test_tiny_dataset_summary(tiny_prepared):
    splits = tiny_prepared.summary["splits"]
    assert {name: s["rows"] for name, s in splits.items()} == {"train": 32, "valid": 4, "test": 4}
    assert 0 <= splits["train"]["like_rate"] <= 1


def test_empty_split_is_reported(tiny_config):
    from thinkrec.data.atomic import DataFileError
    from thinkrec.data.prepared import prepare_dataset

    tiny_config.data.test_share = 0.0
    with pytest.raises(DataFileError, match="test split is empty"):
        prepare_dataset(tiny_config)

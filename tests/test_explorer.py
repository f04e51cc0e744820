"""The backend facade: profiles, items, System-1 scores, and clear errors for bad ids."""

from __future__ import annotations

import pytest

from thinkrec.errors import CheckpointError
from thinkrec.explorer import Explorer, UnknownIdError


def test_profile_lists_train_history_newest_first(tiny_explorer):
    profile = tiny_explorer.profile("2")
    assert profile.user_id == "2" and profile.features["occupation"] == "writer"
    assert len(profile.history) == profile.n_train == 8
    assert set(profile.genre_counts.columns) == {"genre", "liked", "disliked", "share", "leaning"}
    assert profile.genre_counts[["liked", "disliked"]].to_numpy().sum() >= profile.n_train


def test_test_items_carry_the_true_outcome(tiny_explorer):
    tests = tiny_explorer.test_items("1")
    assert len(tests) == 1
    item_id = tests["item_id"].iloc[0]
    assert tiny_explorer.case("1", item_id).truth == bool(tests["liked"].iloc[0])


def test_system1_scores_are_probabilities(tiny_explorer):
    item_id = tiny_explorer.test_items("3")["item_id"].iloc[0]
    table = tiny_explorer.system1_scores(tiny_explorer.case("3", item_id))
    assert table["system"].tolist() == ["Item like-rate (floor)", "MF", "LightGCN", "SASRec"]
    assert table["p_like"].between(0, 1).all()
    assert (table["verdict"] == table["p_like"].gt(0.5).map({True: "Yes", False: "No"})).all()


def test_scores_for_a_pair_outside_the_held_out_rows(tiny_explorer):
    assert tiny_explorer.case("1", "1").truth is None
    assert len(tiny_explorer.system1_scores(tiny_explorer.case("1", "1"))) == 4


@pytest.mark.parametrize("bad", ["0", "999", "abc", "", "<script>alert(1)</script>", "1; DROP TABLE"])
def test_unknown_ids_raise_a_clear_error(tiny_explorer, bad):
    with pytest.raises(UnknownIdError, match="unknown user id"):
        tiny_explorer.profile(bad)
    with pytest.raises(UnknownIdError, match="unknown item id"):
        tiny_explorer.case("1", bad)


def test_search_items(tiny_explorer):
    assert tiny_explorer.search_items("alpha")["title"].tolist() == ["Alpha (1985)", "Alpha Returns (1987)"]
    assert tiny_explorer.search_items("ALPHA returns")["item_id"].tolist() == ["2"]
    assert tiny_explorer.search_items("x" * 10_000 + " zzz").empty


def test_damaged_checkpoint_stops_loading(tiny_explorer, tiny_config):
    weights = tiny_config.paths.checkpoints / "cf" / "mf" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="mf/model.safetensors.*truncated"):
        Explorer.load(tiny_config, with_llm=False)


def test_missing_manifest_stops_loading(tiny_explorer, tiny_config):
    (tiny_config.paths.checkpoints / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="manifest.json: missing"):
        Explorer.load(tiny_config, with_llm=False)


def test_memo_keeps_the_latest_entries():
    from thinkrec.serving.bank import Memo

    memo = Memo(2)
    memo.put_all({"a": 1, "b": 2})
    memo.put_all({"c": 3})
    assert (memo.get("a"), memo.get("b"), memo.get("c")) == (None, 2, 3)

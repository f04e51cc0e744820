"""What if: a dataset user's ratings edited and refolded, on the 4-user fixture.

Fixture user 1 (index 0) rates, oldest first, items 2 3 4 5 6 1 2 3 (train), 4 (valid), 5 (test); it
likes items 4 and 1 only. Item 1 is not held out for them, so its case sees all ten ratings, its own
(liked) included; item 5 is their test row, whose case sees the first nine, one earlier dislike of
item 5 among them.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pandas as pd
import pytest

from demo import whatif
from thinkrec.cf.fold_in import fold_in
from thinkrec.config import LEGACY_PROMPT
from thinkrec.explorer import EditError, UnknownIdError
from thinkrec.llm.prompt import PromptBuilder
from thinkrec.serving.whatif import Editor


def p_like(table: pd.DataFrame, system: str, column: str) -> float:
    return float(table.loc[table["system"] == system, column].iloc[0])


def test_flipping_the_targets_own_like_lowers_its_score_and_flipping_back_restores_it(tiny_explorer):
    change = tiny_explorer.what_if("1", "1", [], ["1"])
    assert change.before.user.rated(0) is True and change.after.user.rated(0) is False
    table = tiny_explorer.what_if_scores(change)
    for system in ("MF", "LightGCN"):  # a refit on a flipped label pulls that item's logit down
        assert p_like(table, system, "after") < p_like(table, system, "before")
    assert p_like(table, "Item like-rate (floor)", "change") == 0.0  # the floor ignores the user
    unedited = tiny_explorer.what_if_scores(tiny_explorer.what_if("1", "1", [], []))
    assert (unedited["change"] == 0).all()
    assert np.allclose(unedited["before"], table["before"])


def test_removing_an_earlier_dislike_of_the_target_raises_its_score(tiny_explorer):
    change = tiny_explorer.what_if("1", "5", ["5"], [])
    assert change.before.truth is False  # the held-out outcome stays with the case
    assert 4 not in change.after.user.items and 4 in change.before.user.items
    table = tiny_explorer.what_if_scores(change)
    for system in ("MF", "LightGCN"):
        assert p_like(table, system, "after") > p_like(table, system, "before")


def test_the_unedited_refold_sees_the_data_rows_history_and_keeps_the_users_prompt(tiny_explorer, tiny_tokenizer):
    explorer = tiny_explorer
    change = explorer.what_if("1", "5", [], [])
    row = explorer.cases.case(0, 4)  # the test row's own history
    assert np.array_equal(change.before.hist_items, row.hist_items)
    assert np.array_equal(change.before.hist_labels, row.hist_labels)
    assert change.before.user.source == 0 and len(change.before.user.items) == 9
    legacy = dataclasses.replace(explorer.config.llm, **LEGACY_PROMPT)  # the shipped systems' prompt
    builder = PromptBuilder(explorer.data, tiny_tokenizer, legacy)
    real, _ = builder.render(0, 4, row.hist_items, row.hist_labels)
    edited, _ = builder.render(change.before.user, 4, change.before.hist_items, change.before.hist_labels)
    assert edited == real  # demographics and history: the same prompt, only the user soft token is refolded
    assert "User (24, M, technician)" in edited


def test_a_refolded_profile_equals_the_guest_paths(tiny_explorer):
    """Removing items 2 and 3 leaves 4 (liked), 5, 6 (disliked), 1 (liked) with no repeats: the guest a visitor
    builds from the same picks lands on the same MF and LightGCN vectors and scores."""
    explorer = tiny_explorer
    change = explorer.what_if("1", "4", ["2", "3"], [])
    edited = change.after.user
    assert edited.items.tolist() == [3, 4, 5, 0] and edited.labels.tolist() == [1, 0, 0, 1]
    guest = explorer.guest(["4", "1"], ["5", "6"])
    for name in ("mf", "lightgcn"):  # order-free encoders (the guest's picks carry no dates)
        assert np.allclose(edited.folded[name].vector, guest.folded[name].vector)
        assert edited.folded[name].bias == pytest.approx(guest.folded[name].bias)
    sasrec = fold_in(explorer.models["sasrec"], edited.items, edited.labels, explorer.data.summary["history_len"],
                     explorer.config.guest.fold_in_l2)  # SASRec reads the ratings in their order
    assert np.allclose(edited.folded["sasrec"].vector, sasrec.vector)
    ours = explorer.system1_scores(change.after)
    theirs = explorer.system1_scores(explorer.case(guest, "4"))
    assert np.allclose(ours.loc[ours["system"] != "SASRec", "p_like"], theirs.loc[theirs["system"] != "SASRec",
                                                                                  "p_like"])


@pytest.mark.parametrize("removed, flipped, error, message", [
    (["99"], [], UnknownIdError, "unknown item id '99'"),
    (["2", "3", "4", "5", "6", "1"], [], EditError, "removing all 6 of this user's ratings leaves nothing"),
    (["2"], ["2"], EditError, "both removed and flipped"),
])
def test_hostile_edits_get_a_clear_message(tiny_explorer, removed, flipped, error, message):
    with pytest.raises(error, match=message):
        tiny_explorer.what_if("1", "1", removed, flipped)


def test_an_edit_naming_films_the_user_did_not_rate_or_more_than_they_rated_is_refused(tiny_explorer):
    """A user whose only ratings are their first three (items 2, 3, 4)."""
    prepared = copy.copy(tiny_explorer.data)
    prepared.rows = prepared.rows.iloc[[0, 1, 2]]
    editor = Editor(prepared, tiny_explorer.models, tiny_explorer.config.guest, tiny_explorer.config.whatif)
    with pytest.raises(EditError, match="1 film\\(s\\) are not among this user's 3 ratings before this case: 'Old"):
        editor.edit(0, 0, [], [5])
    with pytest.raises(EditError, match="the edit names 4 films but this user has only 3 rated"):
        editor.edit(0, 0, [1, 2], [3, 5])


def test_too_many_edits_are_refused(tiny_explorer):
    tiny_explorer.config.whatif.max_edits = 1
    tiny_explorer.editor.settings.max_edits = 1
    with pytest.raises(EditError, match="at most 1 films; 2 were named"):
        tiny_explorer.what_if("1", "1", ["2"], ["3"])


def test_what_if_panel_shows_before_and_after_and_a_share_link(tiny_explorer):
    removed, flipped, *cleared = whatif.rating_choices(tiny_explorer, "1", "5", ["5", "nope"], [])
    assert [value for _, value in removed["choices"]] == ["4", "3", "2", "1", "6", "5"]  # newest first, once each
    assert removed["value"] == ["5"] and cleared[0] == whatif.START
    *_, kept = whatif.rating_choices(tiny_explorer, "1", "5", ["5"], [], ("1", "5"))
    assert kept == {"__type__": "update"}  # the panel already shows this case: nothing is cleared
    summary, figure, gate, table, share = whatif.show(tiny_explorer, "1", "5", ["5"], ["1"])
    assert "removed Laugh Track (1997)" in summary and "flipped Alpha (1985) (liked → disliked)" in summary
    assert list(table.columns) == whatif.COLUMNS and "LightGCN" in table["system"].tolist()
    assert "?user=1&item=5&remove=5&flip=1" in share
    bad, *rest = whatif.show(tiny_explorer, "1", "5", ["<b>x</b>"], [])
    assert bad.startswith("**Cannot apply this edit:**") and "<b>" not in bad and rest[-1] == ""


class FakeRequest:
    def __init__(self, **params):
        self.query_params = params


def test_a_shared_link_opens_the_edit(tiny_explorer):
    removed, flipped, case, panel = whatif.open_link(tiny_explorer, FakeRequest(user="1", item="5", remove="5,2"))
    assert removed["value"] == ["5", "2"] and flipped["value"] == [] and case == ("1", "5") and panel["open"]
    assert whatif.open_link(tiny_explorer, FakeRequest(user="1", item="5"))[2] is None  # no edit: nothing to do
    assert whatif.open_link(tiny_explorer, FakeRequest(user="x", item="5", remove="5"))[2] is None

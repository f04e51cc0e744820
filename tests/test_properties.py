"""Property-based tests: whatever text reaches the facade or a handler (ids, search queries, link
parameters, generation settings), the answer is a result or a clear message, never a stack trace."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from demo import analysis, build, handlers, links
from thinkrec.explorer import UnknownIdError
from thinkrec.llm.generate import GenerationSettings

HOSTILE = st.one_of(
    st.text(max_size=300),
    st.sampled_from(["<script>alert(1)</script>", "' OR 1=1 --", "../../etc/passwd", "1e9", "-1", "0", " 1 ",
                     "\x00", "ユーザー", "🎬" * 50, "=cmd|' /C calc'!A0", "%00", "1" * 5000]),
)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(value=HOSTILE)
def test_ids_resolve_or_raise_unknown_id(tiny_explorer, value):
    for resolve in (tiny_explorer.user_index, tiny_explorer.item_index):
        try:
            index = resolve(value)
        except UnknownIdError as err:
            assert len(str(err)) < 200  # the message quotes at most 40 characters of the input
        else:
            assert index >= 0


@FAST
@given(query=HOSTILE)
def test_search_never_fails_and_every_hit_contains_the_words(tiny_explorer, query):
    found = tiny_explorer.search_items(query)
    assert list(found.columns) == ["item_id", "title"] and len(found) <= 20
    update, note = handlers.search_titles(tiny_explorer, query)
    assert len(update["choices"]) == len(found)


@FAST
@given(user=HOSTILE, item=HOSTILE)
def test_handlers_answer_any_user_and_item(tiny_explorer, user, item):
    card, *_ = handlers.select_user(tiny_explorer, user, item)
    assert isinstance(card, str) and "<script>" not in card
    table, text = handlers.compare_systems(tiny_explorer, user, item)
    assert isinstance(table, pd.DataFrame) and isinstance(text, str) and "<script>" not in text
    link = links.parse_link(tiny_explorer, {"user": user, "item": item, "tab": user, "tau": item, "liked": item})
    assert "<script>" not in " ".join(link.notices)
    assert link.item is None or tiny_explorer.item_index(link.item) >= 0
    assert link.tab in (None, *links.TABS) and (link.tau is None or 0.01 <= link.tau <= 2)
    summary, *_ = build.build_guest(tiny_explorer, [user], [item], item)
    assert isinstance(summary, str) and "<script>" not in summary


@FAST
@given(tokens=st.integers(min_value=-10**6, max_value=10**6), temperature=st.floats(allow_nan=True),
       sample=st.booleans())
def test_generation_settings_are_checked(tokens, temperature, sample):
    candidate = GenerationSettings(max_new_tokens=tokens, do_sample=sample, temperature=temperature)
    try:
        checked = candidate.checked()
    except ValueError as err:
        assert "must lie in" in str(err)
    else:
        assert 1 <= checked.max_new_tokens <= 512
        assert not sample or 0.05 <= checked.temperature <= 2.0


@FAST
@given(show=HOSTILE, key=st.one_of(HOSTILE, st.sampled_from(["cluster", "genre", "age"])), value=HOSTILE,
       confidence=st.floats(allow_nan=True, allow_infinity=True))
def test_analysts_filters_refuse_bad_values_with_a_message(tiny_explorer, show, key, value, confidence):
    table, path, note = analysis.refresh_cases(tiny_explorer, "lightgcn", "mf", show, key, value, confidence)
    assert isinstance(table, pd.DataFrame) and isinstance(note, str)
    _, _, note = analysis.show_disagreements(tiny_explorer, "lightgcn", "mf", confidence, key, value)
    assert isinstance(note, str)
    assert isinstance(analysis.show_calibration(tiny_explorer, ["mf"], key, value)[1], pd.DataFrame)


@pytest.mark.parametrize("value", ["7|", "|", "a|b|c", "<b>|<i>"])
def test_pick_case_passes_odd_values_on_for_validation(value):
    user, item = handlers.pick_case(value)
    assert isinstance(item, str)

"""One case per view: every panel of a pick names the same case, work for a case that is no longer
picked stops and shows nothing, the card shows what the model saw, and citations count the target apart."""

from __future__ import annotations

import gradio as gr
import pytest
from starlette.requests import Request

from demo import handlers, links
from demo.views import API, CaseKey, Views
from thinkrec.data.profiles import AVOIDED, FAVOURED, genre_leaning
from thinkrec.explorer import Explanation


def panels(output: tuple) -> dict:
    return dict(zip(handlers.EXPLORE_OUTPUTS, output))


def test_a_pick_fills_every_cheap_panel_for_one_case(tiny_llm_explorer):
    explorer, views = tiny_llm_explorer, Views()
    shown = panels(handlers.show_case(explorer, views, "tab-1", "2", None, "fused", 12, "http://example.org/"))
    item = explorer.test_items("2")["item_id"].iloc[0]
    key = shown["view"]["key"]
    assert (key.user, key.item, key.settings) == ("2", item, ("fused", 12))
    assert shown["user"]["value"] == "2" and shown["item"]["value"] == item
    title = explorer.item_label(explorer.item_index(item))
    assert key.label == f"user 2 · {title}"
    for name in ("verdict",):
        assert key.label in shown[name]
    for name in ("scores", "prompt"):
        assert key.label in shown[name]["label"]
    assert "User 2" in shown["profile"] and f"What the model saw for {title}" in shown["profile"]
    assert title in shown["outcome"] and "user 2" in shown["outcome"]
    assert "Routing for user 2" in shown["gate_reason"]
    assert f"http://example.org/?user=2&item={item}" in shown["share"] and shown["notice"] == ""
    assert "ThinkRec-fused" not in shown["scores"]["value"]["system"].tolist()  # the LLM rows come next
    case = explorer.case("2", item)
    seen = explorer.prompt_history(case)
    assert len(seen) and all(f'"{t.split(" (")[0]}"' in shown["prompt"]["value"] for t in seen["title"])
    rows, outcome, verdict, reasoning, prompt = handlers.llm_rows(explorer, views, shown["view"])
    assert "ThinkRec-fused" in rows["value"]["system"].tolist() and key.label in rows["label"]
    assert (verdict, reasoning, prompt) == (shown["verdict"], shown["reasoning"], shown["prompt"])  # unanswered


def test_work_for_a_case_left_behind_stops_and_shows_nothing(tiny_llm_explorer):
    explorer, views = tiny_llm_explorer, Views()
    first = panels(handlers.show_case(explorer, views, "tab-1", "2", None, "fused", 200))
    other = panels(handlers.show_case(explorer, views, "tab-2", "1", None, "fused", 200))  # a second tab
    stream = handlers.think(explorer, "2", first["view"]["key"].item, "fused", 200, views, "tab-1")
    elsewhere = handlers.think(explorer, "1", other["view"]["key"].item, "fused", 200, views, "tab-2")
    next(stream), next(stream), next(elsewhere)
    second = panels(handlers.show_case(explorer, views, "tab-1", "1", None, "fused", 200))  # tab 1 moves on
    assert list(stream) == []  # nothing more reaches the page
    assert views.counts["superseded"] == 1
    assert handlers.llm_rows(explorer, views, first["view"]) == (gr.update(),) * 5
    assert list(handlers.auto_think(explorer, views, first["view"], True, 0.0)) == [handlers.UNCHANGED]
    assert "tokens in" in list(elsewhere)[-1][1]  # the other tab's answer was not disturbed
    assert views.counts["finished"] == 1
    answer = list(handlers.auto_think(explorer, views, second["view"], True, 0.2))
    assert second["view"]["key"].label in answer[-1][0] and "tokens in" in answer[-1][1]
    assert handlers.llm_rows(explorer, views, second["view"])[2:] == handlers.UNCHANGED  # its answer stays
    assert list(handlers.auto_think(explorer, views, second["view"], False, 0.0)) == [handlers.UNCHANGED]  # off


def test_a_case_picked_twice_is_answered_once_and_keeps_its_answer(tiny_llm_explorer):
    explorer, views = tiny_llm_explorer, Views()
    first = panels(handlers.show_case(explorer, views, "tab", "2", None, "fused", 200))
    again = panels(handlers.show_case(explorer, views, "tab", "2", None, "fused", 200))  # a dropdown's double input
    streaming = handlers.auto_think(explorer, views, first["view"], True, 0.0)
    next(streaming), next(streaming)
    assert list(handlers.auto_think(explorer, views, again["view"], True, 0.0)) == [handlers.UNCHANGED]
    assert "tokens in" in list(streaming)[-1][1]  # the first answer was not restarted
    assert list(handlers.auto_think(explorer, views, again["view"], True, 0.0)) == [handlers.UNCHANGED]
    assert views.counts["started"] == 1 and views.counts["finished"] == 1 and views.counts["superseded"] == 0
    repicked = panels(handlers.show_case(explorer, views, "tab", "2", None, "fused", 200))
    assert (repicked["verdict"], repicked["reasoning"], repicked["prompt"]) == handlers.UNCHANGED  # kept
    asked = list(handlers.think(explorer, "2", first["view"]["key"].item, "fused", 200, views, "tab"))
    assert "tokens in" in asked[-1][1] and views.counts["started"] == 2  # Think asks again by name


def test_an_answer_the_page_cancelled_leaves_its_case_unanswered(tiny_llm_explorer):
    explorer, views = tiny_llm_explorer, Views()
    shown = panels(handlers.show_case(explorer, views, "tab", "2", None, "fused", 200))
    streaming = handlers.auto_think(explorer, views, shown["view"], True, 0.0)
    next(streaming), next(streaming)
    streaming.close()  # a pick of the same case cancels the running event first
    assert views.counts["cancelled"] == 1 and not views.answered("tab", shown["view"]["key"])
    repicked = panels(handlers.show_case(explorer, views, "tab", "2", None, "fused", 200))
    assert repicked["verdict"] == shown["verdict"] and repicked["reasoning"] == ""  # no half answer kept
    answer = list(handlers.auto_think(explorer, views, repicked["view"], True, 0.0))
    assert "tokens in" in answer[-1][1] and views.counts["finished"] == 1


def test_closing_a_stream_stops_the_model_and_counts_it():
    views, stopped = Views(), []
    key = CaseKey("explore", "1", "2", label="user 1 · Alpha")
    stream = views.stream("tab", key, iter(range(10)), lambda: stopped.append(True))
    assert next(stream) == 0
    stream.close()  # what Gradio does when the page cancels the event
    assert stopped == [True] and views.counts["cancelled"] == 1
    assert views.report()["stopped"] == ["cancelled: user 1 · Alpha"]
    assert list(views.stream(API, key, iter(range(3)), lambda: stopped.append(True))) == [0, 1, 2]
    views.stream("tab", key, iter(range(10)), lambda: stopped.append("unread")).close()  # cancelled before a piece
    assert stopped[-1] == "unread" and views.counts["cancelled"] == 2 and not views.answered("tab", key)


def test_a_pick_stops_and_counts_the_live_stream_at_once_and_only_once():
    views, stopped = Views(), []
    old, new = CaseKey("explore", "1", "2", label="user 1 · Alpha"), CaseKey("explore", "3", "4", label="user 3 · Beta")
    stream = views.stream("tab", old, iter(range(10)), lambda: stopped.append("old"))
    assert next(stream) == 0
    views.show("tab", new)  # the page asks for another case while the old answer waits for its next piece
    assert stopped == ["old"] and views.report()["stopped"] == ["superseded: user 1 · Alpha"]
    assert list(stream) == []  # nothing more of the old answer reaches the page
    assert views.counts["superseded"] == 1 and stopped == ["old"]  # counted and stopped once
    again = views.stream("tab", new, iter(range(2)), lambda: stopped.append("new"))
    assert list(again) == [0, 1] and views.counts["finished"] == 1 and stopped == ["old"]


def test_picks_of_one_view_leave_the_other_views_alone():
    views = Views()
    explore, build = CaseKey("explore", "1", "2"), CaseKey("build", "guest:1/2", "3")
    views.show("tab", explore)
    views.show("tab", build)
    assert views.shows("tab", explore) and views.shows("tab", build)
    views.show("tab", CaseKey("explore", "1", "3"))
    assert not views.shows("tab", explore) and views.shows("tab", build)


class FakeRun:
    """The parts of an Explanation that the citations read."""

    def __init__(self, allowed, target):
        self.allowed, self.target = allowed, target


def test_the_target_is_counted_apart_from_the_history(tiny_explorer):
    run = FakeRun({"Alpha", "Quiet Sea"}, "Quiet Sea")
    text = 'Like "Alpha" and "Laugh Track", the user may enjoy "Quiet Sea".'
    cited = tiny_explorer.citations(text, run)
    assert (cited.target, cited.found, cited.missing) == (["Quiet Sea"], ["Alpha"], ["Laugh Track"])
    footer = handlers.citation_counts(cited)
    assert "1 found in the history" in footer and "1 not found" in footer and "target named" in footer
    marked = handlers.highlight(text, cited)
    assert '<mark class="cited-target">Quiet Sea 🎯 target</mark>' in marked
    assert '<mark class="cited-ok">Alpha ✓</mark>' in marked and '<mark class="cited-missing">Laugh Track ✗' in marked
    alone = tiny_explorer.citations('Only "Quiet Sea" here.', run)
    assert alone.found == [] and "0 found in the history" in handlers.citation_counts(alone)
    assert Explanation.__dataclass_fields__["target"].default == ""


def test_the_card_and_the_taste_chart_follow_one_genre_rule(tiny_explorer):
    assert genre_leaning(1.0, 3, 0.5) == FAVOURED and genre_leaning(1.0, 2, 0.5) == ""
    assert genre_leaning(0.3, 5, 0.5) == AVOIDED and genre_leaning(0.55, 5, 0.5) == ""
    for user_id in tiny_explorer.users_table()["user_id"]:
        profile = tiny_explorer.profile(user_id)
        _, chart, *_ = handlers.select_user(tiny_explorer, user_id)
        traces = {trace.name: list(trace.y) for trace in chart.data}
        assert set(profile.liked_genres) <= set(traces["favoured"])
        assert set(profile.disliked_genres) <= set(traces["avoided"])
        counts = profile.genre_counts
        assert (counts["share"] == counts["liked"] / (counts["liked"] + counts["disliked"])).all()


def request_to(headers: dict) -> gr.Request:
    scope = {"type": "http", "method": "POST", "path": "/gradio_api/queue/join", "root_path": "", "scheme": "http",
             "server": ("10.0.0.5", 7860), "query_string": b"",
             "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    return gr.Request(request=Request(scope))


@pytest.mark.parametrize(("headers", "address"), [
    ({"host": "10.0.0.5:7860"}, "http://10.0.0.5:7860/"),
    ({"host": "internal", "x-forwarded-host": "demo.example.org", "x-forwarded-proto": "https"},
     "https://demo.example.org/"),
])
def test_links_are_absolute_addresses_of_the_page(headers, address):
    assert links.page_address(request_to(headers)) == address
    assert links.page_address(None) == ""
    assert f"]({address}?user=7&item=8)" in handlers.share_markdown("7", "8", address)

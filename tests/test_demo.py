"""The UI builds without a server and every handler answers good and bad input."""

from __future__ import annotations

import gradio as gr

from demo import build_demo, handlers


def test_ui_builds_without_launching(tiny_explorer):
    demo = build_demo(tiny_explorer)
    assert isinstance(demo, gr.Blocks)
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    assert {"user-picker", "profile-card", "genre-chart", "item-picker", "system1-table"} <= ids


def test_user_choices_label_every_user(tiny_explorer):
    choices = handlers.user_choices(tiny_explorer)
    assert [value for _, value in choices] == ["1", "2", "3", "4"]
    assert "technician" in choices[0][0]


def test_select_user_fills_profile_chart_and_items(tiny_explorer):
    card, chart, items = handlers.select_user(tiny_explorer, "2")
    assert "User 2" in card and "writer" in card
    assert chart is not None and len(chart.data) == 2
    assert len(items["choices"]) == 1 and items["value"] == items["choices"][0][1]


def test_select_user_with_bad_id_gives_a_message(tiny_explorer):
    card, chart, items = handlers.select_user(tiny_explorer, "<img src=x onerror=alert(1)>")
    assert "Cannot show this user" in card and "<img" not in card and chart is None
    assert handlers.select_user(tiny_explorer, None)[0] == "Pick a user to begin."


def test_compare_systems(tiny_explorer):
    item_id = tiny_explorer.test_items("1")["item_id"].iloc[0]
    table, text = handlers.compare_systems(tiny_explorer, "1", item_id)
    assert len(table) == 4 and "what really happened" in text
    table, text = handlers.compare_systems(tiny_explorer, "1", "nope")
    assert table.empty and "Cannot score" in text

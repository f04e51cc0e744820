"""The UI builds without a server and every handler answers good and bad input."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from demo import ablation, analysis, build, build_demo, handlers, links
from thinkrec.explorer import Citations


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
    card, chart, items, gate, reason, user_map = handlers.select_user(tiny_explorer, "2")
    assert "User 2" in card and "writer" in card
    assert chart is not None and [t.name for t in chart.data][:2] == ["favoured", "avoided"]
    assert len(items["choices"]) == 1 and items["value"] == items["choices"][0][1]
    assert gate is None and "No cluster experts" in reason  # a System-1-only explorer has no gate
    assert user_map is None  # ... and no map


def test_select_user_with_bad_id_gives_a_message(tiny_explorer):
    card, chart, items, _, _, _ = handlers.select_user(tiny_explorer, "<img src=x onerror=alert(1)>")
    assert "Cannot show this user" in card and "<img" not in card and chart is None
    assert handlers.select_user(tiny_explorer, None)[0] == "Pick a user to begin."


def test_compare_systems(tiny_explorer):
    item_id = tiny_explorer.test_items("1")["item_id"].iloc[0]
    table, text = handlers.compare_systems(tiny_explorer, "1", item_id)
    assert len(table) == 4 and "what really happened" in text  # no LLM loaded: System-1 rows only
    table, text = handlers.compare_systems(tiny_explorer, "1", "nope")
    assert table.empty and "Cannot score" in text


def test_ui_builds_with_llm_systems(tiny_llm_explorer):
    demo = build_demo(tiny_llm_explorer)
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    assert {"gate-chart", "reasoning", "verdict", "prompt", "system-picker"} <= ids
    assert [value for _, value in handlers.system_choices(tiny_llm_explorer)] == ["fused", "thinkrec", "zeroshot"]


def test_select_user_shows_the_gate_and_the_map(tiny_llm_explorer):
    card, _, _, chart, reason, user_map = handlers.select_user(tiny_llm_explorer, "1")
    assert chart is not None and len(chart.data[0].y) == 2
    assert reason.startswith("**Routing for user 1:")
    cluster = tiny_llm_explorer.cluster_of("1")
    assert f"cluster {cluster}" in card
    names = [trace.name for trace in user_map.data]
    assert names[-1] == "User 1" and "centroids" in names
    n_points = sum(len(t.x) for t in user_map.data if t.name.startswith("Cluster"))
    assert n_points == tiny_llm_explorer.data.n_users
    star = user_map.data[-1]
    row = tiny_llm_explorer.map_table().set_index("user_id").loc["1"]
    assert (star.x[0], star.y[0]) == (row["x"], row["y"])


def test_select_user_refuses_an_unknown_wanted_item(tiny_llm_explorer):
    card, *_ = handlers.select_user(tiny_llm_explorer, "1", "99999")
    assert "Cannot show this user" in card and "unknown item id" in card


def test_think_streams_verdict_then_reasoning_then_grounding(tiny_llm_explorer):
    item_id = tiny_llm_explorer.test_items("2")["item_id"].iloc[0]
    updates = list(handlers.think(tiny_llm_explorer, "2", item_id, "fused", 12))
    placeholder, first_text, prompt = updates[0]
    assert "thinking…" in placeholder and first_text == "" and "⟨CF user⟩" in prompt
    assert len(updates) >= 3  # at least one streamed piece between the placeholder and the final, annotated text
    verdict = updates[1][0]
    label = tiny_llm_explorer.item_label(tiny_llm_explorer.item_index(item_id))
    assert verdict.startswith(f"_Case: user 2 · {label} · ThinkRec-fused_ · **P(Yes) = ") and updates[1][1] != ""
    assert "tokens in" in updates[-1][1]
    scored = tiny_llm_explorer.llm_scores(tiny_llm_explorer.case("2", item_id)).set_index("system")["p_like"]
    assert f"{scored['ThinkRec-fused']:.3f}" in verdict  # the stream's P(Yes) is the scored one


def test_compare_without_llm_rows_is_system1_only(tiny_llm_explorer):
    item_id = tiny_llm_explorer.test_items("1")["item_id"].iloc[0]
    table, _ = handlers.compare_systems(tiny_llm_explorer, "1", item_id, with_llm=False)
    assert len(table) == 4 and "ThinkRec-fused" not in table["system"].tolist()


def test_think_with_bad_input_gives_a_message(tiny_llm_explorer):
    assert list(handlers.think(tiny_llm_explorer, None, None, None, 12))[0][0].startswith("Pick")
    message = list(handlers.think(tiny_llm_explorer, "2", "1", "mystery", 12))[0][0]
    assert "unknown LLM system" in message
    message = list(handlers.think(tiny_llm_explorer, "2", "1", "fused", 10_000))[0][0]
    assert "max_new_tokens" in message
    message = list(handlers.think(tiny_llm_explorer, "2", "1", "fused", None))[0][0]
    assert message.startswith("**Cannot explain this case:**")


def test_compare_includes_llm_systems(tiny_llm_explorer):
    item_id = tiny_llm_explorer.test_items("1")["item_id"].iloc[0]
    table, _ = handlers.compare_systems(tiny_llm_explorer, "1", item_id)
    assert "ThinkRec-fused" in table["system"].tolist() and len(table) == 7


def test_highlight_marks_found_and_missing_titles_safely():
    text = 'Like "Alpha" and <b>"Ghost"</b>'
    cited = Citations(["Alpha"], ["Ghost"], [], ((6, 11, "found"), (21, 26, "missing")))
    marked = handlers.highlight(text, cited)
    assert '<mark class="cited-ok">Alpha ✓</mark>' in marked
    assert '<mark class="cited-missing">Ghost ✗</mark>' in marked and "<b>" not in marked


def test_a_quoted_name_that_is_no_film_is_marked_and_counted(tiny_explorer):
    text = 'Yes. Like "Alpha" and "Alphaa Returns".'
    run = SimpleNamespace(target="Beta", allowed=["Alpha"])
    cited = tiny_explorer.citations(text, run)
    assert cited.found == ["Alpha"] and cited.unknown == ["Alphaa Returns"] and cited.missing == []
    marked = handlers.highlight(text, cited)
    assert '<mark class="cited-missing">Alphaa Returns ✗ no such film</mark>' in marked
    assert "1 quoted names that are no film in the catalogue" in handlers.citation_counts(cited)


def test_search_titles(tiny_explorer):
    update, note = handlers.search_titles(tiny_explorer, "alpha")
    assert [v for _, v in update["choices"]] == ["1", "2"] and note == "2 match(es)"
    update, note = handlers.search_titles(tiny_explorer, "<script>")
    assert update["choices"] == []


class FakeRequest:
    def __init__(self, **params):
        self.query_params = params


def test_shared_link_selects_user_and_item(tiny_explorer):
    user, item, notice, tab, *_ = links.open_link(tiny_explorer, FakeRequest(user="2", item="5"))
    assert user["value"] == "2" and item == "5" and notice == "" and tab == {"__type__": "update"}
    _, _, items, *_ = handlers.select_user(tiny_explorer, "2", item)
    assert items["value"] == "5" and "5" in [v for _, v in items["choices"]]


def test_bad_shared_link_gives_a_notice(tiny_explorer):
    user, item, notice, *_ = links.open_link(tiny_explorer, FakeRequest(user="99999", item="<script>", tab="x",
                                                                        tau="nan", liked="1,zzz"))
    assert user["value"] is None and item is None
    for problem in ("unknown user id", "unknown item id", "unknown tab", "temperature", "zzz"):
        assert problem in notice
    assert "<script>" not in notice
    assert links.open_link(tiny_explorer, None)[2] == ""


def test_build_link_fills_the_picks_not_the_explore_case(tiny_explorer):
    user, item, notice, tab, tau, _, _, opened, liked, disliked, target = links.open_link(
        tiny_explorer, FakeRequest(tab="build", liked="1, 2", disliked="5", item="4", tau="0.5"))
    assert user["value"] is None and item is None and notice == "" and opened == "build"
    assert liked["value"] == ["1", "2"] and disliked["value"] == ["5"] and target["value"] == "4"
    assert tau["value"] == 0.5


def test_ablation_link_gives_the_case_to_the_ablation_tab_only(tiny_explorer):
    user, item, notice, tab, tau, ablation_user, ablation_item, opened, *_ = links.open_link(
        tiny_explorer, FakeRequest(tab="ablation", user="2", item="5", tau="0.3"))
    assert user["value"] is None and item is None and notice == "" and opened == "ablation"
    assert (ablation_user, ablation_item, tau["value"]) == ("2", "5", 0.3)
    assert ablation.take_case(None, None, "2", "5") == ("2", "5")  # the linked case survives the tab opening
    assert ablation.take_case("3", "1", "2", "5") == ("3", "1")  # a case opened in Explore is taken over


def test_build_guest_shows_map_gate_scores_and_a_link(tiny_explorer):
    summary, figure, gate, reason, scores, share = build.build_guest(tiny_explorer, ["1", "2"], ["5"], "4")
    assert "2 liked, 1 disliked" in summary and len(scores) == 4 and scores["p_like"].between(0, 1).all()
    assert "tab=build&liked=1,2&disliked=5&item=4" in share
    assert build.build_guest(tiny_explorer, [], [], None)[0].startswith("Pick at least 3")
    refused = build.build_guest(tiny_explorer, ["1", "2"], ["2"], "4")
    assert "both liked and disliked" in refused[0] and refused[4].empty
    untargeted = build.build_guest(tiny_explorer, ["1", "2"], ["5"], None)
    assert "pick a movie to ask about" in untargeted[0] and untargeted[4].empty  # the profile shows already


def test_a_guest_map_stars_the_guest(tiny_llm_explorer):
    _, figure, gate, reason, _, _ = build.build_guest(tiny_llm_explorer, ["1", "2"], ["5"], "4")
    assert figure is not None and "You" in [trace.name for trace in figure.data]
    assert gate is not None and "Routing:" in reason


def test_a_guest_sees_each_expert_alone_beside_the_other_systems(tiny_llm_explorer):
    scores = build.build_guest(tiny_llm_explorer, ["1", "2"], ["5"], "4", with_llm=True)[4].set_index("system")
    assert {"ThinkRec expert 1 alone", "ThinkRec expert 2 alone", "ThinkRec-fused", "LightGCN"} <= set(
        scores.index)
    assert scores["p_like"].between(0, 1).all()


def test_think_guest_streams_an_answer(tiny_llm_explorer):
    steps = list(build.think_guest(tiny_llm_explorer, ["1", "2"], ["5"], "4", "fused", 8))
    verdict, reasoning, prompt = steps[-1]
    assert "P(Yes)" in verdict and "guest user" in prompt and "tokens in" in reasoning
    assert "Cannot explain" in next(build.think_guest(tiny_llm_explorer, ["1"], [], "4", "fused", 8))[0]


def test_ablation_scores_every_variant_and_streams_each_column(tiny_llm_explorer):
    labels = ablation.variant_labels(tiny_llm_explorer)
    assert labels[0] == "Global adapter" and labels[-1] == "Gate's choice (fused)"
    item_id = tiny_llm_explorer.test_items("2")["item_id"].iloc[0]
    header, gate, sweep, reason, table = ablation.ablation_scores(tiny_llm_explorer, "2", item_id, 0.1)
    assert table["answered by"].tolist() == labels and table["p_like"].between(0, 1).all()
    assert [trace.name for trace in sweep.data] == ["Expert 1", "Expert 2"]
    assert all(abs(sum(t.y[n] for t in sweep.data) - 1) < 1e-9 for n in range(len(ablation.SWEEP_TAUS)))
    assert "tab=ablation&user=2" in header and "tau=0.1" in header
    cold = ablation.ablation_scores(tiny_llm_explorer, "2", item_id, 0.001)[4]
    assert cold["p_like"].iloc[-1] in cold["p_like"].iloc[1:-1].tolist()  # a cold gate picks one expert
    assert cold["p_like"].iloc[:-1].tolist() == table["p_like"].iloc[:-1].tolist()  # memoised, not re-scored
    case = tiny_llm_explorer.case("2", item_id)
    fresh = tiny_llm_explorer.bank.p_yes_under("thinkrec", case,
                                              [v.weights for v in tiny_llm_explorer.ablation(case, 0.001)[0]])
    assert cold["p_like"].tolist() == [round(p, 4) for p in fresh]
    steps = list(ablation.ablation_streams(tiny_llm_explorer, "2", item_id, 0.1, 8))
    assert len(steps[-1]) == 2 * len(labels) and all("P(Yes)" in steps[-1][2 * n] for n in range(len(labels)))
    assert ablation.ablation_scores(tiny_llm_explorer, None, None, 0.1)[0] == ablation.NO_CASE
    assert "Cannot run" in ablation.ablation_scores(tiny_llm_explorer, "2", item_id, -1)[0]


def test_share_markdown():
    assert "?user=3&item=7" in handlers.share_markdown("3", "7") and handlers.share_markdown(None, "7") == ""


def test_pick_case_splits_the_value():
    user, item = handlers.pick_case("7|12")
    assert user["value"] == "7" and item == "12"
    assert handlers.pick_case(None)[1] is None and handlers.pick_case("garbage")[1] is None


def test_refresh_cases_filters_and_exports(tiny_llm_explorer):
    import pandas as pd

    table, path, note = analysis.refresh_cases(tiny_llm_explorer, "fused", "mf", "all cases", "cluster", "all", 0)
    everything = tiny_llm_explorer.workbench.rows
    assert len(table) == len(everything) and note.startswith(f"{len(everything)} of {len(everything)} cases")
    assert pd.read_csv(path)["item_id"].astype(str).tolist() == table["item_id"].astype(str).tolist()
    wrong, _, _ = analysis.refresh_cases(tiny_llm_explorer, "fused", "mf", "wrong answers", None, None, 0)
    assert not wrong["fused right"].any()
    one, _, _ = analysis.refresh_cases(tiny_llm_explorer, "fused", "mf", "all cases", "cluster", "1", 0)
    assert set(one["cluster"]) == {"1"} and len(one) == (everything["cluster"] == "1").sum()
    table, path, note = analysis.refresh_cases(tiny_llm_explorer, "nope", "mf", "all cases", None, None, 0)
    assert table.empty and path is None and "Cannot filter" in note


def test_cases_table_shows_the_surest_rows_and_the_csv_keeps_every_one(tiny_llm_explorer, monkeypatch):
    import pandas as pd

    everything = tiny_llm_explorer.workbench.rows
    monkeypatch.setattr(tiny_llm_explorer.config.analysis, "cases_shown", 3)
    table, path, note = analysis.refresh_cases(tiny_llm_explorer, "fused", "mf", "all cases", None, None, 0)
    assert len(table) == 3 and len(pd.read_csv(path)) == len(everything) > 3
    assert note.startswith(f"{len(everything)} of {len(everything)} cases")
    assert "the 3 ThinkRec-fused is surest of" in note
    sureness = (2 * table["P(like) ThinkRec-fused"] - 1).abs()
    assert sureness.is_monotonic_decreasing
    assert sureness.iloc[-1] >= (2 * everything["fused"].round(3) - 1).abs().nlargest(3).iloc[-1]


def test_the_analyse_tab_charts_slices_calibration_and_disagreements(tiny_llm_explorer):
    workbench = tiny_llm_explorer.workbench
    assert {"cluster", "activity", "popularity", "genre", "age", "gender", "occupation", "routing"} <= set(
        workbench.slice_keys)
    chart, table, note = analysis.show_slice(tiny_llm_explorer, "gender", ["fused", "mf"])
    assert [trace.name for trace in chart.data] == ["ThinkRec-fused", "MF"]
    assert set(table["slice value"]) == set(workbench.rows["gender"]) and "values of gender" in note
    assert analysis.slice_values(tiny_llm_explorer, "gender")["choices"] == ["all", "F", "M"]
    reliability, ece = analysis.show_calibration(tiny_llm_explorer, ["fused", "mf"], "gender", "F")
    assert ece["system"].tolist() == ["ThinkRec-fused", "MF"] and (ece["rows"] == (workbench.rows["gender"] ==
                                                                                  "F").sum()).all()
    assert [trace.name for trace in reliability.data][0] == "calibrated"
    matrix, rows, note = analysis.show_disagreements(tiny_llm_explorer, "fused", "mf", 0.5, None, "all")
    assert matrix[["said yes, liked", "said yes, not liked", "said no, liked", "said no, not liked"]].sum(
        axis=1).tolist() == [len(workbench.rows)] * 2
    assert rows.columns[:2].tolist() == ["user_id", "item_id"] and "who was right" in rows.columns
    assert analysis.show_slice(tiny_llm_explorer, "gender", [])[0] is None


def test_open_case_reads_the_clicked_row():
    class Event:
        row_value = ["3", "17", "Alpha (1995)", True, 1, 0.7]

    user, item, tabs = handlers.open_case(Event())
    assert user["value"] == "3" and item == "17"
    assert handlers.open_case(type("Empty", (), {"row_value": None})())[1] is None


def test_ui_builds_with_every_tab(tiny_llm_explorer):
    demo = build_demo(tiny_llm_explorer)
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    assert {"user-map", "case-picker", "analyse-table", "analyse-csv", "results-table", "slice-chart",
            "calibration-chart", "disagreement-table", "confusion-table"} <= ids


def test_a_user_without_held_out_movies_is_pointed_to_the_search(tiny_explorer, monkeypatch):
    import pandas as pd

    empty = pd.DataFrame(columns=["item_id", "title", "liked"])
    monkeypatch.setattr(tiny_explorer, "test_items", lambda user_id: empty)
    _, _, items, *_ = handlers.select_user(tiny_explorer, "2")
    assert items["choices"] == [] and items["value"] is None and items["info"] == handlers.NO_HELD_OUT

"""``build_demo``: the Gradio Blocks of ThinkRec Explorer, built without launching a server."""

from __future__ import annotations

from functools import partial

import gradio as gr
import pandas as pd

from demo import ablation, about, analysis, build, handlers, links, whatif
from demo.charts import results_chart
from demo.views import Views, session_of
from thinkrec import registry
from thinkrec.config import GATE_TAU_RANGE
from thinkrec.explorer import Explorer

TITLE = "ThinkRec Explorer"
CSS = """
mark.cited-ok { background: #d8f3dc; }
mark.cited-missing { background: #ffd6d6; }
mark.cited-target { background: #e2e2f6; }
.claim { text-decoration-line: underline; text-decoration-thickness: 2px; text-underline-offset: 3px; cursor: help; }
.claim-true { text-decoration-style: solid; text-decoration-color: #2d6a4f; }
.claim-false { text-decoration-style: wavy; text-decoration-color: #c1121f; }
.claim-unchecked { text-decoration-style: dotted; text-decoration-color: #6c757d; }
.claim-sign { font-size: 0.7em; font-weight: bold; margin-left: 1px; padding: 0 2px; border: 1px solid currentColor;
              border-radius: 3px; }
.claim-true .claim-sign { color: #2d6a4f; }
.claim-false .claim-sign { color: #c1121f; }
.claim-unchecked .claim-sign { color: #6c757d; }
#architecture svg { max-width: 900px; width: 100%; height: auto; }
.stale-case { visibility: hidden; }
"""
# The browser's last line of defence for "one case per view": a message of an answer still in flight can reach
# the page after the next pick has been shown (Gradio applies each event's messages in its own loop). Every
# answer names its case in the verdict ("Case: user 7 · Title (year) · …"); while that is not the case the
# pickers show, the verdict, the reasoning and the prompt are hidden.
STALE_GUARD_JS = """
() => {
  const ids = ["verdict", "reasoning", "prompt"];
  const check = () => {
    const verdict = document.getElementById("verdict");
    const user = document.querySelector("#user-picker input")?.value || "";
    const item = document.querySelector("#item-picker input")?.value || "";
    if (!verdict) return;
    const named = /Case: user (\\S+) · (.+?) · /.exec(verdict.textContent || "");
    const picked = /^User (\\S+) ·/.exec(user);
    const stale = !!named && (!picked || named[1] !== picked[1] || !item.endsWith(named[2]));
    for (const id of ids) document.getElementById(id)?.classList.toggle("stale-case", stale);
  };
  new MutationObserver(check).observe(document.body, {subtree: true, childList: true, characterData: true,
                                                      attributes: true, attributeFilter: ["value"]});
  document.addEventListener("input", check, true);
  setInterval(check, 500);
}
"""


def build_demo(explorer: Explorer) -> gr.Blocks:
    """The whole UI, wired to one backend facade. ``demo.views`` knows which case every session shows,
    so work for a case that is no longer picked stops."""
    views = Views()
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\nPick a MovieLens user, see where they sit among the user clusters, watch ThinkRec "
                    "reason about a movie they rated, and compare it with System-1 recommenders that answer "
                    "without thinking.")
        notice = gr.Markdown(elem_id="notice")
        wanted_item = gr.State(None)
        linked_tab = gr.State(None)
        with gr.Tabs() as tabs:
            with gr.Tab("Explore", id="explore"):
                explore = _explore_tab(explorer)
            with gr.Tab("Build a profile", id="build"):
                built = _build_tab(explorer)
            with gr.Tab("Expert ablation", id="ablation") as ablation_tab:
                ablate = _ablation_tab(explorer)
            with gr.Tab("Analyse", id="analyse"):
                analyse = _analyse_tab(explorer)
                _results(explorer)
            with gr.Tab("About", id="about"):
                gr.Markdown(about.ABOUT)
                gr.HTML(about.architecture_html())
        explore["notice"] = notice
        _wire(explorer, views, explore, analyse, tabs, wanted_item)
        _wire_build(explorer, views, built, notice)
        _wire_ablation(explorer, views, ablate, explore, ablation_tab, notice)
        _wire_links(explorer, views, demo, explore, built, ablate, tabs, wanted_item, notice, linked_tab)
        whatif.wire(explorer, demo, explore, explore["whatif"])  # what if: the Explore case with edited ratings

        def stream_counts() -> dict:
            """How many answers this server started, finished, and stopped because their case was left."""
            return views.report()

        def compare(user_id: str, item_id: str) -> dict:
            """Every system's P(like) for a case (what the scores table shows once the LLM rows are in)."""
            table, outcome = handlers.compare_systems(explorer, user_id, item_id)
            return {"scores": table.to_dict("records"), "outcome": outcome}

        gr.api(stream_counts, api_name="stream_counts")
        gr.api(compare, api_name="compare")
    demo.views = views
    return demo


def _explore_tab(explorer: Explorer) -> dict:
    systems = handlers.system_choices(explorer)
    cases = analysis.curated_cases(explorer.case_table())
    w: dict = {}
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Row():
                w["user"] = gr.Dropdown(handlers.user_choices(explorer), label="User", elem_id="user-picker", scale=4)
                w["lucky"] = gr.Button("🎲 Random", scale=1)
            w["case"] = gr.Dropdown(cases, label="…or a curated case", value=None, elem_id="case-picker",
                                    visible=bool(cases))
            w["profile"] = gr.Markdown("Pick a user to begin.", elem_id="profile-card")
            w["map"] = gr.Plot(label="Cluster map", elem_id="user-map")
            w["gate"] = gr.Plot(label="Gate", elem_id="gate-chart")
            w["gate_reason"] = gr.Markdown(elem_id="gate-reason")
            w["genres"] = gr.Plot(label="Taste", elem_id="genre-chart")
        with gr.Column(scale=1):
            # Choices change per user; the handlers validate ids themselves, so API callers and shared
            # links may name any item without the dropdown's own check refusing it first.
            w["item"] = gr.Dropdown([], label="Held-out movie (👍 liked / 👎 not)", elem_id="item-picker",
                                    allow_custom_value=True)
            with gr.Accordion("…or any movie from the catalogue", open=False):
                w["query"] = gr.Textbox(label="Title search", max_length=200)
                w["found"] = gr.Markdown()
            with gr.Row():
                w["system"] = gr.Radio(systems, value=systems[0][1] if systems else None, label="Who thinks",
                                       elem_id="system-picker")
                w["length"] = gr.Slider(16, 256, value=explorer.config.llm.max_new_tokens, step=8,
                                        label="Max new tokens")
            with gr.Row():
                w["go"] = gr.Button("Think", variant="primary", elem_id="think", scale=2)
                w["auto"] = gr.Checkbox(explorer.config.demo.auto_think, label="Think by itself once the case "
                                        "stays put", elem_id="auto-think", scale=1)
            w["verdict"] = gr.Markdown(elem_id="verdict")
            w["reasoning"] = gr.HTML(elem_id="reasoning")
            with gr.Accordion("Show the exact prompt", open=False):
                w["prompt"] = gr.Code(label="Prompt (⟨CF …⟩ marks a soft token)", language=None, elem_id="prompt")
            w["outcome"] = gr.Markdown(elem_id="outcome")
            w["scores"] = gr.Dataframe(pd.DataFrame(columns=handlers.SCORE_COLUMNS), label="Every system's prediction",
                                       elem_id="system1-table", interactive=False)
            w["share"] = gr.Markdown(elem_id="share")
    w["view"] = gr.State(None)  # the case the panels show: {"session", "key", "pick"} (handlers.show_case)
    w["whatif"] = whatif.panel(explorer)
    return w


def _build_tab(explorer: Explorer) -> dict:
    systems = handlers.system_choices(explorer)
    movies = build.catalogue_choices(explorer)
    w: dict = {}
    gr.Markdown("Rate a few movies yourself. ThinkRec folds your ratings into its collaborative-filtering space "
                "(the trained models stay fixed), places you on the cluster map, routes you through the gate and "
                "reasons about any movie for you. Type in a box to search the titles.")
    with gr.Row():
        with gr.Column(scale=1):
            w["liked"] = gr.Dropdown(movies, multiselect=True, label="Movies you liked", elem_id="guest-liked",
                                     max_choices=explorer.config.guest.max_picks)
            w["disliked"] = gr.Dropdown(movies, multiselect=True, label="Movies you disliked",
                                        elem_id="guest-disliked", max_choices=explorer.config.guest.max_picks)
            w["item"] = gr.Dropdown(movies, label="Movie to ask about", elem_id="guest-target", value=None)
            with gr.Row():
                w["system"] = gr.Radio(systems, value=systems[0][1] if systems else None, label="Who thinks",
                                       elem_id="guest-system")
                w["length"] = gr.Slider(16, 256, value=explorer.config.llm.max_new_tokens, step=8,
                                        label="Max new tokens")
            w["go"] = gr.Button("Build my profile and think", variant="primary", elem_id="guest-think")
            w["summary"] = gr.Markdown(build.START.format(n=explorer.config.guest.min_picks), elem_id="guest-summary")
            w["map"] = gr.Plot(label="You on the cluster map", elem_id="guest-map")
            w["gate"] = gr.Plot(label="Gate", elem_id="guest-gate")
            w["gate_reason"] = gr.Markdown(elem_id="guest-gate-reason")
        with gr.Column(scale=1):
            w["verdict"] = gr.Markdown(elem_id="guest-verdict")
            w["reasoning"] = gr.HTML(elem_id="guest-reasoning")
            with gr.Accordion("Show the exact prompt", open=False):
                w["prompt"] = gr.Code(label="Prompt", language=None, elem_id="guest-prompt")
            w["scores"] = gr.Dataframe(pd.DataFrame(columns=handlers.SCORE_COLUMNS), label="Every system's prediction",
                                       elem_id="guest-scores", interactive=False)
            w["share"] = gr.Markdown(elem_id="guest-share")
    return w


def _ablation_tab(explorer: Explorer) -> dict:
    labels = ablation.variant_labels(explorer)
    # The case (user and item ids) is the tab's own, so a link can open it without running the Explore tab;
    # hidden textboxes rather than State, so the API takes them too.
    w: dict = {"columns": [], "tau": gr.State(None), "user": gr.Textbox(visible=False),
               "item": gr.Textbox(visible=False)}
    if not labels:
        gr.Markdown("No cluster experts are trained yet, so there is nothing to ablate.")
        return w
    gr.Markdown("The case open in the Explore tab, answered by ThinkRec's global adapter, by each cluster expert "
                "alone and by the gate's choice. The scores come from one batch in which every row carries its own "
                "adapter mixture; the answers then stream one after another. Move the temperature to see how the "
                "gate's weights and the fused verdict move.")
    w["case"] = gr.Markdown(ablation.NO_CASE, elem_id="ablation-case")
    with gr.Row():
        w["tau"] = gr.Slider(*GATE_TAU_RANGE, value=explorer.config.fusion.gate.tau, step=0.01,
                             label="Gate temperature τ", elem_id="ablation-tau")
        w["length"] = gr.Slider(16, 256, value=64, step=8, label="Max new tokens per answer")
        w["go"] = gr.Button("Run the ablation", variant="primary", elem_id="ablation-run")
    with gr.Row():
        w["gate"] = gr.Plot(label="Gate at this temperature", elem_id="ablation-gate")
        w["sweep"] = gr.Plot(label="Gate across temperatures", elem_id="ablation-sweep")
        with gr.Column():
            w["gate_reason"] = gr.Markdown(elem_id="ablation-gate-reason")
            w["scores"] = gr.Dataframe(pd.DataFrame(columns=ablation.COLUMNS), label="P(Yes) of each variant",
                                       elem_id="ablation-scores", interactive=False)
    with gr.Row():
        for number, label in enumerate(labels):
            with gr.Column(min_width=220):
                gr.Markdown(f"#### {label}")
                w["columns"] += [gr.Markdown(elem_id=f"ablation-verdict-{number}"),
                                 gr.HTML(elem_id=f"ablation-reasoning-{number}")]
    return w


def _analyse_tab(explorer: Explorer) -> dict:
    workbench = explorer.workbench
    if workbench is None:
        gr.Markdown("No stored test predictions to analyse yet (`python -m thinkrec eval-llm ...`, then `report`).")
        return {}
    table = workbench.rows
    systems = [(registry.label(s), s) for s in analysis.scored_systems(table)]
    main, rival = analysis.default_pair(table)
    chosen = analysis.default_systems(table)
    key = analysis.DEFAULT_SLICE if analysis.DEFAULT_SLICE in workbench.slice_keys else workbench.slice_keys[0]
    llms, system1 = analysis.llm_and_system1(workbench)
    llm = next((key for _, key in llms if key == main), llms[0][1] if llms else None)
    system1_model = next((key for _, key in system1 if key == rival), system1[0][1] if system1 else None)
    chart, metrics, slice_note = analysis.show_slice(explorer, key, chosen)
    reliability, ece = analysis.show_calibration(explorer, chosen, key, analysis.ALL)
    matrix, disagreements, disagree_note = analysis.show_disagreements(explorer, llm, system1_model, 0.5, key,
                                                                      analysis.ALL)
    cases, csv, note = analysis.refresh_cases(explorer, main, rival, analysis.SHOW[0], key, analysis.ALL, 0)
    w: dict = {}
    gr.Markdown(f"Every stored test prediction ({workbench.summary['rows']} rows of {workbench.summary['users']} "
                "users), every system side by side. Slice the rows, compare AUC per slice with intervals that "
                "resample users, check calibration, find where an LLM and a System-1 model disagree, and read the "
                "cases: sort by a column header, download them as CSV, or click a row to open it in Explore.")
    with gr.Row():
        w["slice"] = gr.Dropdown(analysis.slice_choices(workbench), value=key, label="Slice by",
                                 elem_id="analyse-slice")
        w["value"] = gr.Dropdown(analysis.slice_value_choices(workbench, key), value=analysis.ALL,
                                 label="Keep one slice value (calibration, disagreements, cases)",
                                 elem_id="analyse-slice-value")
        w["systems"] = gr.Dropdown(systems, value=chosen, multiselect=True, label="Systems in the charts",
                                   elem_id="analyse-systems")
    with gr.Tabs():
        with gr.Tab("AUC by slice", id="analyse-slices"):
            w["slice_note"] = gr.Markdown(slice_note, elem_id="slice-note")
            w["slice_chart"] = gr.Plot(chart, label="AUC by slice", elem_id="slice-chart")
            w["slice_table"] = gr.Dataframe(metrics, label="Metrics by slice value", interactive=False,
                                            elem_id="slice-table", max_height=360)
        with gr.Tab("Calibration", id="analyse-calibration"):
            w["calibration_chart"] = gr.Plot(reliability, label="Reliability diagram", elem_id="calibration-chart")
            w["ece"] = gr.Dataframe(ece, label="Expected calibration error (ECE)", interactive=False,
                                    elem_id="ece-table")
        with gr.Tab("Disagreements", id="analyse-disagreements"):
            with gr.Row():
                w["llm"] = gr.Dropdown(llms, value=llm, label="LLM", elem_id="disagree-llm")
                w["system1"] = gr.Dropdown(system1, value=system1_model, label="System-1 model",
                                           elem_id="disagree-system1")
                w["threshold"] = gr.Slider(0, 1, value=0.5, step=0.05, label="Verdict threshold of the confusion table",
                                           elem_id="confusion-threshold")
            w["confusion"] = gr.Dataframe(matrix, label="Confusion at the threshold", interactive=False,
                                          elem_id="confusion-table")
            w["disagree_note"] = gr.Markdown(disagree_note, elem_id="disagree-note")
            w["disagreements"] = gr.Dataframe(disagreements, label="Largest disagreements", interactive=False,
                                              elem_id="disagreement-table", max_height=420)
    gr.Markdown("#### Every prediction")
    with gr.Row():
        w["system"] = gr.Dropdown(systems, value=main, label="System", elem_id="analyse-system")
        w["rival"] = gr.Dropdown(systems, value=rival, label="Compared with", elem_id="analyse-rival")
        w["show"] = gr.Radio(list(analysis.SHOW), value=analysis.SHOW[0], label="Show", elem_id="analyse-show")
        w["confidence"] = gr.Slider(0, 1, value=0, step=0.05, label="Minimum confidence |2p - 1|")
    w["note"] = gr.Markdown(note, elem_id="analyse-note")
    w["table"] = gr.Dataframe(cases, label="Cases", interactive=False, elem_id="analyse-table", max_height=520)
    w["csv"] = gr.DownloadButton("Download these rows (CSV)", value=csv, elem_id="analyse-csv")
    return w


def _results(explorer: Explorer) -> None:
    workbench = explorer.workbench
    if workbench is None:
        return
    reference = workbench.summary["reference"]
    gr.Markdown("### Results\nAUC / UAUC recomputed from the stored predictions of every system on the same "
                f"{workbench.summary['rows']} test rows, with {workbench.summary['settings']['confidence']:.0%} "
                "intervals that resample users"
                + (f", and each system's AUC minus {registry.label(reference)}'s on the same resampled users (the best "
                   "System-1 model here)" if reference else "")
                + ". The full report, with the paper's ML-1M figures for context, is RESULTS.md in the repository.")
    gr.Dataframe(analysis.overall_table(workbench), label="Test AUC / UAUC with intervals", interactive=False,
                 elem_id="results-table")
    gr.Plot(results_chart(workbench.overall, registry.label), label="AUC by system", elem_id="results-chart")


def _wire_links(explorer: Explorer, views: Views, demo: gr.Blocks, w: dict, b: dict, a: dict, tabs, wanted_item,
                notice, linked_tab) -> None:
    """A page load reads the shared link (``demo.links``) and opens what it names, as a visitor's own pick
    would: the Explore case (which then reasons once it settles), the built profile (which reasons at
    once, as its button does), the ablation at its temperature."""

    def open_shared_link(request: gr.Request):  # gradio injects the request only into a plain signature
        return links.open_link(explorer, request)

    def linked_case(user, item, system, length, request: gr.Request):
        return handlers.show_case(explorer, views, session_of(request), user, item, system, length,
                                  links.page_address(request), clear_notice=False)

    def linked_profile(liked, disliked, item, request: gr.Request):
        return build.build_guest(explorer, liked, disliked, item, address=links.page_address(request))

    opened = demo.load(open_shared_link, None, [w["user"], wanted_item, notice, tabs, a["tau"], a["user"], a["item"],
                                                 linked_tab, b["liked"], b["disliked"], b["item"]])
    opened.then(linked_case, [w["user"], wanted_item, w["system"], w["length"]], _explore_outputs(w))
    built = opened.then(linked_profile, _picks(b), _guest_outputs(b))
    _build_reasoning(explorer, views, built, b, linked_tab)
    def linked_ablation(tab, user, item, tau, request: gr.Request):
        return ablation.scores_if_linked(explorer, tab, user, item, tau, views, session_of(request),
                                         links.page_address(request))

    if a["columns"]:
        opened.then(linked_ablation, [linked_tab, a["user"], a["item"], a["tau"]], _ablation_outputs(a))


def _explore_outputs(w: dict) -> list:
    return [w[name] for name in handlers.EXPLORE_OUTPUTS]


def _picks(b: dict) -> list:
    return [b["liked"], b["disliked"], b["item"]]


def _guest_outputs(b: dict) -> list:
    return [b["summary"], b["map"], b["gate"], b["gate_reason"], b["scores"], b["share"]]


def _ablation_outputs(a: dict) -> list:
    return [a["case"], a["gate"], a["sweep"], a["gate_reason"], a["scores"]]


def _build_reasoning(explorer: Explorer, views: Views, placed, b: dict, linked_tab=None) -> None:
    """After the guest is placed: the streamed answer, then the LLM scores. With ``linked_tab``, only
    when the page was opened by a build link (the button's own chain is the API's)."""
    linked = [] if linked_tab is None else [linked_tab]

    def think_guest(tab, liked, disliked, item, system, length, request: gr.Request):
        if tab != "build":
            yield handlers.UNCHANGED  # a generator that yields nothing would clear its outputs
            return
        yield from build.think_guest(explorer, liked, disliked, item, system, length, views, session_of(request))

    def with_llm(tab, liked, disliked, item, request: gr.Request):
        if tab != "build":
            return tuple(gr.update() for _ in _guest_outputs(b))
        return build.build_guest(explorer, liked, disliked, item, with_llm=True, address=links.page_address(request))

    if linked_tab is None:
        def think(liked, disliked, item, system, length, request: gr.Request):
            yield from think_guest("build", liked, disliked, item, system, length, request)

        def scores(liked, disliked, item, request: gr.Request):
            return with_llm("build", liked, disliked, item, request)

        placed.then(think, [*_picks(b), b["system"], b["length"]], [b["verdict"], b["reasoning"], b["prompt"]],
                    api_name="think_guest").then(scores, _picks(b), _guest_outputs(b), api_name="build_profile")
        return
    placed.then(think_guest, [*linked, *_picks(b), b["system"], b["length"]],
                [b["verdict"], b["reasoning"], b["prompt"]]).then(with_llm, [*linked, *_picks(b)], _guest_outputs(b))


def _wire_build(explorer: Explorer, views: Views, b: dict, notice) -> None:
    """The build tab: picks -> guest (map, gate, System-1 scores) -> streamed answer -> LLM scores. A new
    press supersedes the answer still streaming for the previous picks."""

    def place(liked, disliked, item, request: gr.Request):
        return build.build_guest(explorer, liked, disliked, item, address=links.page_address(request))

    b["go"].click(None, None, notice, js="() => ''")  # a pick in any tab clears the link's notice
    placed = b["go"].click(place, _picks(b), _guest_outputs(b), api_name="place_guest")
    _build_reasoning(explorer, views, placed, b)


def _wire_ablation(explorer: Explorer, views: Views, a: dict, w: dict, tab, notice) -> None:
    """Opening the ablation tab takes over the Explore tab's case (if any); it is scored when opened, run or
    re-tempered. A new run, temperature or case supersedes the answers still streaming."""
    if not a["columns"]:
        return
    case = [a["user"], a["item"], a["tau"]]

    def scores(user, item, tau, request: gr.Request):
        return ablation.ablation_scores(explorer, user, item, tau, views, session_of(request),
                                        links.page_address(request))

    def streams(user, item, tau, length, request: gr.Request):
        yield from ablation.ablation_streams(explorer, user, item, tau, length, views, session_of(request))

    tab.select(ablation.take_case, [w["user"], w["item"], a["user"], a["item"]], [a["user"], a["item"]],
               queue=False).then(scores, case, _ablation_outputs(a))
    a["tau"].release(scores, case, _ablation_outputs(a), trigger_mode="always_last")
    a["go"].click(None, None, notice, js="() => ''")
    a["go"].click(scores, case, _ablation_outputs(a), api_name="ablation_scores").then(
        streams, [*case, a["length"]], a["columns"], api_name="ablation")


def _wire(explorer: Explorer, views: Views, w: dict, a: dict, tabs, wanted_item) -> None:
    """Events of the Explore tab: one case per view.

    Every pick (a person choosing a user or a movie, Random, a curated case, a row of the analysts' table,
    a new system or length) runs ``show_case``, which returns every cheap panel of the new case at once
    and the view's state; its change adds the LLMs' scores and, once the case has settled, streams the
    reasoning. A pick first cancels the costly steps still running for the previous case (Gradio's
    ``cancels``), and ``Views`` makes sure that nothing they still produce reaches the page."""
    shown = _explore_outputs(w)
    thought = [w["verdict"], w["reasoning"], w["prompt"]]
    settle = explorer.config.demo.settle_seconds

    def llm(view):
        return handlers.llm_rows(explorer, views, view)

    def auto(view, automatic):
        yield from handlers.auto_think(explorer, views, view, automatic, settle)

    def think(user, item, system, length, request: gr.Request):
        yield from handlers.think(explorer, user, item, system, length, views, session_of(request))

    rows = w["view"].change(llm, w["view"], [w["scores"], w["outcome"], *thought], show_progress="hidden")
    costly = [rows, rows.success(auto, [w["view"], w["auto"]], thought, show_progress="hidden"),
              w["go"].click(think, [w["user"], w["item"], w["system"], w["length"]], thought, api_name="think")]

    def show(user, item, system, length, request: gr.Request):
        return handlers.show_case(explorer, views, session_of(request), user, item, system, length,
                                  links.page_address(request))

    def pick_user(user, system, length, request: gr.Request):
        return show(user, None, system, length, request)

    def lucky(system, length, request: gr.Request):
        return show(handlers.random_user(explorer), None, system, length, request)

    def curated(value, system, length, request: gr.Request):
        user, item = handlers.pick_case(value)
        return show(user.get("value"), item, system, length, request)

    def picked(trigger, fn, inputs, outputs=shown, **options):
        trigger(None, None, None, cancels=costly, queue=False)  # stop the previous case's work first
        return trigger(fn, inputs, outputs, trigger_mode="always_last", **options)

    settings = [w["system"], w["length"]]
    picked(w["user"].input, pick_user, [w["user"], *settings], api_name="select_user")
    picked(w["lucky"].click, lucky, settings)
    picked(w["case"].input, curated, [w["case"], *settings])
    for control in (w["item"].input, w["system"].input, w["length"].release):
        picked(control, show, [w["user"], w["item"], *settings])
    found = picked(w["query"].submit, partial(handlers.search_titles, explorer), w["query"], [w["item"], w["found"]])
    found.success(show, [w["user"], w["item"], *settings], shown)

    def open_row(table) -> None:
        opened = picked(table.select, handlers.open_case, None, [w["user"], wanted_item, tabs])
        opened.success(show, [w["user"], wanted_item, *settings], shown)

    _wire_analyse(explorer, a, open_row)


def _wire_analyse(explorer: Explorer, a: dict, open_row) -> None:
    """The analysts' tab: a slice choice redraws the chart and resets the value filter; the value filter,
    the systems and the pickers redraw what depends on them; a click on a case opens it in Explore
    (``open_row``, as a pick there would)."""
    if not a:
        return
    chart = partial(analysis.show_slice, explorer)
    charted = [a["slice_chart"], a["slice_table"], a["slice_note"]]
    calibration = partial(analysis.show_calibration, explorer)
    calibrated = [a["calibration_chart"], a["ece"]]
    compare = partial(analysis.show_disagreements, explorer)
    compared = [a["confusion"], a["disagreements"], a["disagree_note"]]
    cases = partial(analysis.refresh_cases, explorer)
    listed = [a["table"], a["csv"], a["note"]]
    filters = [a["system"], a["rival"], a["show"], a["slice"], a["value"], a["confidence"]]
    pair = [a["llm"], a["system1"], a["threshold"], a["slice"], a["value"]]

    a["slice"].input(partial(analysis.slice_values, explorer), a["slice"], a["value"]).then(
        chart, [a["slice"], a["systems"]], charted).then(
        calibration, [a["systems"], a["slice"], a["value"]], calibrated).then(
        compare, pair, compared).then(cases, filters, listed)
    a["value"].input(calibration, [a["systems"], a["slice"], a["value"]], calibrated).then(
        compare, pair, compared).then(cases, filters, listed)
    a["systems"].change(chart, [a["slice"], a["systems"]], charted).then(
        calibration, [a["systems"], a["slice"], a["value"]], calibrated)
    for control in (a["llm"], a["system1"], a["threshold"]):
        control.change(compare, pair, compared)
    for control in (a["system"], a["rival"], a["show"], a["confidence"]):
        control.change(cases, filters, listed)
    for table in (a["table"], a["disagreements"]):
        open_row(table)

"""What if, in the Explore tab: remove some of the user's ratings or flip them, and watch every system move.

The edited user is refolded into every encoder (``Explorer.what_if``); the map shows where the user's
refolded self was and where the edit takes them, the gate chart both weightings, the table every
system's P(like) before and after, and the chosen system's reasoning streams for the edited profile.
Nothing is kept between events: the widgets (or a shared link, ``?user=&item=&remove=&flip=``) are the
whole state, and the reset clears the edit.
"""

from __future__ import annotations

import html
import logging
from functools import partial

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from demo import links
from demo.charts import CLUSTER_COLOURS, user_map_chart
from demo.handlers import DECISIONS, link_markdown, stream_answer
from thinkrec.data.split import PAD
from thinkrec.explorer import EditError, Explorer, UnknownIdError, WhatIf

log = logging.getLogger(__name__)
COLUMNS = ["system", "before", "after", "change", "verdict"]
START = ("Choose ratings to remove or flip, then press **What if?** The user is refolded into every model from "
         "the edited ratings (the trained weights stay fixed).")
BEFORE_COLOUR, AFTER_COLOUR = "#8d99ae", "#e63946"
MAX_LINK_CHARS = 2000


def panel(explorer: Explorer) -> dict:
    """The what-if widgets, laid out where it is called (inside the Explore tab)."""
    w: dict = {"link_case": gr.State(None), "shown_case": gr.State(None)}  # the case a link names / on show
    with gr.Accordion("What if… edit this user's ratings", open=False, elem_id="whatif") as w["accordion"]:
        gr.Markdown(START)
        with gr.Row():
            # custom values allowed so the API and links may name any id; the handlers check them
            w["remove"] = gr.Dropdown([], multiselect=True, label="Remove these ratings", elem_id="whatif-remove",
                                      allow_custom_value=True, max_choices=explorer.config.whatif.max_edits)
            w["flip"] = gr.Dropdown([], multiselect=True, label="Flip these (liked ↔ disliked)",
                                    elem_id="whatif-flip", allow_custom_value=True,
                                    max_choices=explorer.config.whatif.max_edits)
        with gr.Row():
            w["apply"] = gr.Button("What if?", variant="primary", elem_id="whatif-apply")
            w["reset"] = gr.Button("Reset to the real user", elem_id="whatif-reset")
        w["summary"] = gr.Markdown(elem_id="whatif-summary")
        with gr.Row():
            w["map"] = gr.Plot(label="Before and after on the map", elem_id="whatif-map")
            w["gate"] = gr.Plot(label="Gate before and after", elem_id="whatif-gate")
        w["scores"] = gr.Dataframe(pd.DataFrame(columns=COLUMNS), label="P(like) before and after the edit",
                                   elem_id="whatif-scores", interactive=False)
        w["verdict"] = gr.Markdown(elem_id="whatif-verdict")
        w["reasoning"] = gr.HTML(elem_id="whatif-reasoning")
        with gr.Accordion("Show the edited prompt", open=False):
            w["prompt"] = gr.Code(label="Prompt of the edited profile", language=None, elem_id="whatif-prompt")
        w["share"] = gr.Markdown(elem_id="whatif-share")
    return w


def wire(explorer: Explorer, demo: gr.Blocks, explore: dict, w: dict) -> None:
    """Events: a new case refreshes the ratings on offer; What if? scores, streams, then adds the LLMs' scores."""
    case, edit = [explore["user"], explore["item"]], [w["remove"], w["flip"]]
    shown = [w["summary"], w["map"], w["gate"], w["scores"], w["share"]]
    thought = [w["verdict"], w["reasoning"], w["prompt"]]
    asked = [explore["system"], explore["length"]]
    explore["item"].change(partial(rating_choices, explorer), [*case, *edit, w["shown_case"]],
                           [*edit, *shown, *thought])

    def apply(user, item, removed, flipped, request: gr.Request):  # gradio injects the request only here
        return show(explorer, user, item, removed, flipped, address=links.page_address(request))

    def compare(user, item, removed, flipped, request: gr.Request):
        return show(explorer, user, item, removed, flipped, with_llm=True, address=links.page_address(request))

    w["apply"].click(apply, [*case, *edit], shown, api_name="what_if").then(
        lambda user, item: (user, item), case, w["shown_case"], queue=False).then(
        partial(think, explorer), [*case, *edit, *asked], thought, api_name="what_if_think").then(
        compare, [*case, *edit], shown, api_name="what_if_compare")
    w["reset"].click(reset, None, [*edit, *shown, *thought], queue=False)

    def open_shared_link(request: gr.Request):  # gradio injects the request only into a plain signature
        return open_link(explorer, request)

    def apply_linked(link_case, removed, flipped, request: gr.Request):
        return show_linked(explorer, link_case, removed, flipped, address=links.page_address(request))

    def compare_linked(link_case, removed, flipped, request: gr.Request):
        return show_linked(explorer, link_case, removed, flipped, with_llm=True, address=links.page_address(request))

    opened = demo.load(open_shared_link, None, [*edit, w["link_case"], w["accordion"]])
    opened.then(lambda link_case: link_case, w["link_case"], w["shown_case"], queue=False).then(
        apply_linked, [w["link_case"], *edit], shown).then(
        partial(think_linked, explorer), [w["link_case"], *edit, *asked], thought).then(
        compare_linked, [w["link_case"], *edit], shown)


def _ids(values) -> list[str]:
    return [str(v).strip()[:40] for v in (values or []) if str(v).strip()]


def _choices(explorer: Explorer, user_id: str, item_id: str) -> list[tuple[str, str]]:
    films = explorer.rated_films(user_id, item_id)
    return [(f"{'👍' if liked else '👎'} {title}" + (" · in the prompt" if shown else ""), film)
            for film, title, liked, shown in films.itertuples(index=False)]


def _empty_outputs() -> tuple:
    return START, None, None, pd.DataFrame(columns=COLUMNS), "", "", "", ""


def rating_choices(explorer: Explorer, user_id: str | None, item_id: str | None, removed, flipped,
                   shown_case=None):
    """The ratings the case sees, newest first, as the edit's choices; picks still among them are kept, and
    what the panel shows is cleared unless it is this case's (``shown_case``: the case last shown)."""
    if not user_id or not item_id:
        return gr.update(choices=[], value=[]), gr.update(choices=[], value=[]), *_empty_outputs()
    try:
        choices = _choices(explorer, user_id, item_id)
    except UnknownIdError as err:
        log.warning("what-if choices: %s", err)
        return gr.update(choices=[], value=[]), gr.update(choices=[], value=[]), *_empty_outputs()
    known = {value for _, value in choices}
    keep = lambda values: [v for v in _ids(values) if v in known]  # noqa: E731
    same = shown_case is not None and tuple(shown_case) == (user_id, item_id)
    return (gr.update(choices=choices, value=keep(removed)), gr.update(choices=choices, value=keep(flipped)),
            *([gr.update()] * len(_empty_outputs()) if same else _empty_outputs()))


def reset():
    """Back to the real user: no edit, nothing shown."""
    return gr.update(value=[]), gr.update(value=[]), *_empty_outputs()


def show(explorer: Explorer, user_id: str | None, item_id: str | None, removed, flipped, with_llm: bool = False,
         address: str = ""):
    """Summary, map (before → after), gate (before and after), every system's P(like) before and after, and
    the share link (absolute when the page's ``address`` is known). ``with_llm`` adds the LLM systems (the UI
    asks after the reasoning has streamed)."""
    empty = pd.DataFrame(columns=COLUMNS)
    if not user_id or not item_id:
        return "Pick a user and a movie first.", None, None, empty, ""
    try:
        change = explorer.what_if(user_id, item_id, _ids(removed), _ids(flipped))
        scores = explorer.what_if_scores(change, with_llm=with_llm)
    except (UnknownIdError, EditError) as err:
        log.warning("what-if: %s", err)
        return f"**Cannot apply this edit:** {html.escape(str(err))}", None, None, empty, ""
    routes = explorer.gate(change.before.user), explorer.gate(change.after.user)
    return (summary_markdown(explorer, change, routes), map_figure(explorer, user_id, change),
            gate_figure(*routes) if routes[0] is not None else None, scores,
            share_markdown(user_id, item_id, removed, flipped, address))


def think(explorer: Explorer, user_id: str | None, item_id: str | None, removed, flipped, system: str | None,
          max_new_tokens: float):
    """Stream the chosen system's answer for the edited profile."""
    if not user_id or not item_id or not system:
        yield "Pick a user, a movie and a system.", "", ""
        return
    yield from stream_answer(explorer, lambda: explorer.what_if(user_id, item_id, _ids(removed), _ids(flipped)).after,
                             system, max_new_tokens)


def show_linked(explorer: Explorer, link_case, removed, flipped, with_llm: bool = False, address: str = ""):
    """``show`` for the case a shared link names (nothing when the link holds no edit)."""
    if not link_case:
        return gr.update(), gr.update(), gr.update(), gr.update(), gr.update()
    return show(explorer, *link_case, removed, flipped, with_llm=with_llm, address=address)


def think_linked(explorer: Explorer, link_case, removed, flipped, system: str | None, max_new_tokens: float):
    if not link_case:
        yield gr.update(), gr.update(), gr.update()
        return
    yield from think(explorer, *link_case, removed, flipped, system, max_new_tokens)


def open_link(explorer: Explorer, request: gr.Request | None):
    """The edit a page address asks for (``remove`` and ``flip``: comma-separated item ids) with its
    choices, the case it applies to (None when the link holds no edit) and the panel, opened for an edit."""
    params = dict(request.query_params) if request is not None else {}
    value = {key: str(params.get(key, ""))[:MAX_LINK_CHARS] for key in ("user", "item", "remove", "flip")}
    removed, flipped = (_ids(value[key].split(",")) for key in ("remove", "flip"))
    if not (removed or flipped):
        return gr.update(), gr.update(), None, gr.update()
    user_id, item_id = value["user"].strip()[:40], value["item"].strip()[:40]
    try:
        choices = _choices(explorer, user_id, item_id)
    except UnknownIdError as err:  # the Explore tab's own link handler names the bad id
        log.warning("what-if link: %s", err)
        return gr.update(), gr.update(), None, gr.update()
    return (gr.update(choices=choices, value=removed), gr.update(choices=choices, value=flipped),
            (user_id, item_id), gr.update(open=True))


def share_markdown(user_id: str, item_id: str, removed, flipped, address: str = "") -> str:
    """A link to the edited case (the item ids keep their commas readable)."""
    return link_markdown("this what-if", address, {"user": user_id, "item": item_id, "remove": ",".join(_ids(removed)),
                                                  "flip": ",".join(_ids(flipped))}, safe=",")


def summary_markdown(explorer: Explorer, change: WhatIf, routes) -> str:
    label = explorer.item_label
    before, after = change.before.user, change.after.user
    parts = []
    if change.removed:
        parts.append("removed " + ", ".join(html.escape(label(i)) for i in change.removed))
    if change.flipped:
        turned = {True: "liked → disliked", False: "disliked → liked"}
        parts.append("flipped " + ", ".join(f"{html.escape(label(i))} ({turned[before.rated(i)]})"
                                            for i in change.flipped))
    edit = "; ".join(parts) if parts else "nothing edited yet (this is the user refolded from their own ratings)"
    history_note = prompt_change(change)
    lines = [f"### What if · {html.escape(label(change.item))}",
             f"**Edit:** {edit}.",
             (f"**Before** is the user refolded from their {len(before.items)} ratings as they are, **after** from "
              f"{len(after.items)} edited ones, so the change is the edit's alone. "
              f"{history_note}")]
    if routes[0] is not None:
        lines.append(f"**Gate:** {DECISIONS[routes[0].decision]} → {DECISIONS[routes[1].decision]}.")
    return "\n\n".join(lines)


def prompt_change(change: WhatIf) -> str:
    """How the edit changes the history the prompt shows, in words."""
    before = dict(zip(change.before.hist_items.tolist(), change.before.hist_labels.tolist()))
    after = dict(zip(change.after.hist_items.tolist(), change.after.hist_labels.tolist()))
    before.pop(PAD, None), after.pop(PAD, None)
    left, came = len(before.keys() - after.keys()), len(after.keys() - before.keys())
    flipped = sum(before[i] != after[i] for i in before.keys() & after.keys())
    if not (left or came or flipped):
        return "The prompt's history is unchanged (the edit touches only older ratings)."
    return (f"The prompt's history: {left} film(s) leave it, {came} older one(s) come in, {flipped} flipped "
            "(see the edited prompt below).")


def map_figure(explorer: Explorer, user_id: str, change: WhatIf) -> go.Figure | None:
    """The user map with the real user starred and an arrow from the refolded user to the edited one."""
    table = explorer.map_table()
    if table is None:
        return None
    figure = user_map_chart(table, explorer.centroid_coords(), user_id)
    (x0, y0), (x1, y1) = explorer.place(change.before.user), explorer.place(change.after.user)
    figure.add_trace(go.Scatter(x=[x0], y=[y0], mode="markers", name="before (refolded)", hoverinfo="skip",
                                marker={"size": 13, "color": BEFORE_COLOUR, "line": {"width": 1, "color": "#222"}}))
    figure.add_trace(go.Scatter(x=[x1], y=[y1], mode="markers", name="after the edit", hoverinfo="skip",
                                marker={"size": 13, "symbol": "diamond", "color": AFTER_COLOUR,
                                        "line": {"width": 1, "color": "#222"}}))
    figure.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", text="",
                          showarrow=True, arrowhead=3, arrowwidth=2, arrowcolor=AFTER_COLOUR)
    return figure


def gate_figure(before, after) -> go.Figure:
    """Each expert's gate weight before and after the edit, side by side."""
    names = [f"Expert {k + 1}" for k in range(len(before.weights))]
    figure = go.Figure([
        go.Bar(x=names, y=list(before.weights), name="before", marker_color=BEFORE_COLOUR,
               text=[f"{w:.0%}" for w in before.weights], textposition="outside", cliponaxis=False),
        go.Bar(x=names, y=list(after.weights), name="after", marker_color=CLUSTER_COLOURS[0],
               text=[f"{w:.0%}" for w in after.weights], textposition="outside", cliponaxis=False)])
    figure.update_layout(barmode="group", height=260, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         yaxis={"range": [0, 1.15], "title": "weight"}, title="Gate weights before and after",
                         legend={"orientation": "h", "y": -0.15})
    return figure

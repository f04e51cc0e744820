"""The "Expert ablation" tab's handlers: the Explore tab's case through ThinkRec's global adapter,
each cluster expert alone and the gate's mixture, side by side, with the gate temperature free."""

from __future__ import annotations

import html
import logging

import gradio as gr
import numpy as np
import pandas as pd

from demo.charts import gate_chart, gate_sweep_chart
from demo.handlers import gate_markdown, link_markdown, stream_explanation
from demo.views import API, CaseKey, Views
from thinkrec.config import GATE_TAU_RANGE
from thinkrec.explorer import Explorer, UnknownIdError

log = logging.getLogger(__name__)
COLUMNS = ["answered by", "p_like", "verdict"]
SWEEP_TAUS = np.geomspace(*GATE_TAU_RANGE, 60).tolist()  # the slider's range, for the weights-across-τ chart
NO_CASE = "Open a case in the Explore tab (a user and a movie), then come back to this tab."


def variant_labels(explorer: Explorer) -> list[str]:
    """The side-by-side columns: global adapter, each expert, the gate's choice (empty without experts)."""
    return [v.label for v in explorer.bank.ablation(0)] if explorer.bank else []


def ablation_key(explorer: Explorer, user_id: str, item_id: str, tau: float) -> CaseKey:
    """The ablation view's case: user, item and gate temperature (raises UnknownIdError on a bad id)."""
    label = f"user {user_id} · {explorer.item_label(explorer.item_index(item_id))} · τ = {tau:g}"
    return CaseKey("ablation", str(user_id), str(item_id), (round(tau, 6),), label)


def case_markdown(explorer: Explorer, user_id: str, item_id: str, tau: float, address: str = "") -> str:
    case = explorer.case(user_id, item_id)
    truth = "" if case.truth is None else f" · truth: {'liked' if case.truth else 'not liked'}"
    link = link_markdown("this ablation", address, {"tab": "ablation", "user": user_id, "item": item_id,
                                                    "tau": f"{tau:g}"})
    return (f"**Case:** user {html.escape(user_id)} · {html.escape(explorer.item_label(case.item))} · "
            f"τ = {tau:g}{truth}\n\n{link}")


def take_case(explore_user: str | None, explore_item: str | None, user: str | None, item: str | None):
    """The case the tab shows when opened: the Explore tab's, if it has one; else the tab's own (from a link)."""
    return (explore_user, explore_item) if explore_user and explore_item else (user, item)


def ablation_scores(explorer: Explorer, user_id: str | None, item_id: str | None, tau: float,
                    views: Views | None = None, session: str = API, address: str = ""):
    """Case line, gate chart at ``tau`` and across temperatures, the gate's reason, and every variant's
    P(Yes) (one batched pass). With ``views`` the case becomes the view's, so answers still streaming for
    another case or temperature stop."""
    empty = pd.DataFrame(columns=COLUMNS)
    if not user_id or not item_id:
        return NO_CASE, None, None, "", empty
    try:
        route = explorer.gate(user_id, float(tau))
        variants, p_yes = explorer.ablation(explorer.case(user_id, item_id), float(tau))
        header = case_markdown(explorer, user_id, item_id, float(tau), address)
        sweep = [explorer.gate(user_id, t) for t in SWEEP_TAUS]
        if views is not None:
            views.show(session, ablation_key(explorer, user_id, item_id, float(tau)))
    except (UnknownIdError, ValueError, TypeError) as err:
        log.warning("ablation_scores: %s", err)
        return f"**Cannot run the ablation:** {html.escape(str(err))}", None, None, "", empty
    table = pd.DataFrame({"answered by": [v.label for v in variants], "p_like": [round(p, 4) for p in p_yes],
                          "verdict": ["Yes" if p > 0.5 else "No" for p in p_yes]})
    return (header, gate_chart(route), gate_sweep_chart(SWEEP_TAUS, sweep, float(tau)),
            gate_markdown(route, f"user {user_id} at τ = {float(tau):g}"), table)


def scores_if_linked(explorer: Explorer, linked_tab: str | None, user_id: str | None, item_id: str | None,
                     tau: float, views: Views | None = None, session: str = API, address: str = ""):
    """``ablation_scores`` when the page was opened by an ablation link; otherwise leave the tab as it is."""
    if linked_tab != "ablation":
        return tuple(gr.update() for _ in range(5))
    return ablation_scores(explorer, user_id, item_id, tau, views, session, address)


def ablation_streams(explorer: Explorer, user_id: str | None, item_id: str | None, tau: float,
                     max_new_tokens: float, views: Views | None = None, session: str = API):
    """Each variant's answer in turn, streamed into its own column: yields (verdict, reasoning) for
    every column, flattened. With ``views`` a new run, temperature or case stops it."""
    shown = [""] * (2 * len(variant_labels(explorer)))
    if not user_id or not item_id:
        yield tuple([NO_CASE, ""] * (len(shown) // 2))
        return
    try:
        case = explorer.case(user_id, item_id)
        settings = explorer.decoding("fused", int(max_new_tokens))
        variants = explorer.bank.ablation(case.user, float(tau))
        key = ablation_key(explorer, user_id, item_id, float(tau))
    except (UnknownIdError, ValueError, TypeError) as err:
        log.warning("ablation_streams: %s", err)
        yield tuple([f"**Cannot run the ablation:** {html.escape(str(err))}", ""] * (len(shown) // 2))
        return
    running = []  # the column's answer now streaming, for stopping it

    def columns():
        for column, variant in enumerate(variants):
            shown[2 * column] = "_Thinking…_"
            yield tuple(shown)
            running[:] = [explorer.explain(case, "thinkrec", settings, variant=variant)]
            for verdict, reasoning in stream_explanation(explorer, running[0], f"{key.label} · {variant.label}"):
                shown[2 * column], shown[2 * column + 1] = verdict, reasoning
                yield tuple(shown)

    updates = columns()
    if views is not None:
        updates = views.stream(session, key, updates, lambda: running and running[0].stream.stop())
    shown_any = False
    for update in updates:
        shown_any = True
        yield update
    if not shown_any:  # superseded before it began: a generator that yields nothing would blank the columns
        yield tuple(gr.update() for _ in shown)

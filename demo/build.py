"""The "Build a profile" tab's handlers: a visitor's own likes and dislikes become a guest user.

Nothing is kept between events: every handler rebuilds the guest from the picks (fold-in takes
milliseconds), so the picks in the widgets, or in a shared link, are the whole state.
"""

from __future__ import annotations

import html
import logging

import pandas as pd

from demo.charts import gate_chart, user_map_chart
from demo.handlers import SCORE_COLUMNS, gate_markdown, link_markdown, stream_answer
from demo.views import API, CaseKey, Views
from thinkrec.explorer import Explorer, UnknownIdError
from thinkrec.guest import GuestError

log = logging.getLogger(__name__)
START = "Pick at least {n} movies you liked or disliked, and a movie to ask about."


def catalogue_choices(explorer: Explorer) -> list[tuple[str, str]]:
    """Every catalogue movie as a dropdown entry (typing in the dropdown searches the titles)."""
    return [(explorer.item_label(i), item_id) for i, item_id in enumerate(explorer.data.items["item_id"])]


def _picks(values) -> list[str]:
    return [str(v) for v in (values or [])]


def _guest_case(explorer: Explorer, liked, disliked, item_id: str | None):
    """The guest and the case "will they like item_id?"; raises GuestError / UnknownIdError."""
    if not item_id:
        raise GuestError("pick a movie to ask about")
    guest = explorer.guest(_picks(liked), _picks(disliked))
    return guest, explorer.case(guest, item_id)


def share_markdown(liked, disliked, item_id: str | None, address: str = "") -> str:
    return link_markdown("this profile", address, {"tab": "build", "liked": ",".join(_picks(liked)),
                                                   "disliked": ",".join(_picks(disliked)), "item": item_id or ""},
                         safe=",")


def guest_key(explorer: Explorer, liked, disliked, item_id: str, system: str | None, max_new_tokens) -> CaseKey:
    """The build view's case: the picks, the movie asked about and who thinks (raises UnknownIdError)."""
    label = (f"your profile ({len(_picks(liked))} liked, {len(_picks(disliked))} disliked) · "
             f"{explorer.item_label(explorer.item_index(item_id))}")
    return CaseKey("build", f"guest:{','.join(_picks(liked))}/{','.join(_picks(disliked))}", str(item_id),
                   (system, max_new_tokens), label)


def build_guest(explorer: Explorer, liked, disliked, item_id: str | None, with_llm: bool = False,
                address: str = ""):
    """Summary, map with the guest starred, gate chart and reason, every system's scores for the target
    (once one is picked) and a share link. ``with_llm`` adds the LLM systems' P(Yes) and each cluster
    expert's alone (the UI asks for them after the reasoning has streamed). Untouched widgets (no picks,
    no target) just show how to start."""
    empty = pd.DataFrame(columns=SCORE_COLUMNS)
    if not liked and not disliked and not item_id:
        return START.format(n=explorer.config.guest.min_picks), None, None, "", empty, ""
    try:
        guest = explorer.guest(_picks(liked), _picks(disliked))
        route = explorer.gate(guest)
        case = explorer.case(guest, item_id) if item_id else None
        parts = []
        if case is not None:
            parts.append(explorer.system1_scores(case))
            if with_llm:
                parts += [explorer.llm_scores(case), explorer.expert_scores(case)]
    except (GuestError, UnknownIdError) as err:
        log.warning("build_guest: %s", err)
        return f"**Cannot build this profile:** {html.escape(str(err))}", None, None, "", empty, ""
    summary = f"### Your profile\n{int(guest.labels.sum())} liked, {int((1 - guest.labels).sum())} disliked. "
    if case is None:
        summary += "Now pick a movie to ask about."
    else:
        own = "" if case.truth is None else f" (you {'liked' if case.truth else 'disliked'} it yourself)"
        summary += f"Asking about **{html.escape(explorer.item_label(case.item))}**{own}."
    table = explorer.map_table()
    figure = None if table is None else user_map_chart(table, explorer.centroid_coords(), None, explorer.place(guest))
    scores = pd.concat(parts, ignore_index=True) if parts else empty
    return (summary, figure, gate_chart(route) if route else None, gate_markdown(route), scores,
            share_markdown(liked, disliked, item_id, address))


def think_guest(explorer: Explorer, liked, disliked, item_id: str | None, system: str | None,
                max_new_tokens: float, views: Views | None = None, session: str = API):
    """Stream the chosen system's answer for the guest: verdict first, then the reasoning; with ``views``
    a later press (other picks) supersedes it."""
    if not system:
        yield "Pick a system.", "", ""
        return
    try:
        key = guest_key(explorer, liked, disliked, item_id, system, max_new_tokens) if item_id else None
    except UnknownIdError:
        key = None  # stream_answer names the problem
    yield from stream_answer(explorer, lambda: _guest_case(explorer, liked, disliked, item_id)[1], system,
                             max_new_tokens, views, session, key)

"""Shareable links: every view of the demo opens from its page address.

    ?user=<id>&item=<id>                          the Explore tab on that case
    ?user=<id>&item=<id>&remove=<ids>&flip=<ids>  ... with a what-if edit of the ratings (read by ``demo.whatif``)
    ?tab=ablation&user=<id>&item=<id>&tau=<t>     the expert ablation of that case at temperature t
    ?tab=build&liked=<ids>&disliked=<ids>&item=<id>   a built profile (comma-separated ids)
    ?tab=analyse                                  the analysts' table

Values are checked here; what is unknown or malformed is dropped with a notice naming it.
"""

from __future__ import annotations

import html
import logging
import math
from dataclasses import dataclass, field

import gradio as gr
from gradio.route_utils import get_root_url

from thinkrec.config import GATE_TAU_RANGE
from thinkrec.explorer import Explorer, UnknownIdError

log = logging.getLogger(__name__)
TABS = ("explore", "build", "ablation", "analyse")
MAX_VALUE_CHARS = 2000


@dataclass
class Link:
    """What a page address asks for, with every value already checked."""

    tab: str | None = None
    user: str | None = None
    item: str | None = None
    tau: float | None = None
    liked: list[str] = field(default_factory=list)
    disliked: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


def parse_link(explorer: Explorer, params: dict) -> Link:
    """Read and check the query parameters of a shared link."""
    value = {key: str(params.get(key, ""))[:MAX_VALUE_CHARS].strip() for key in
             ("tab", "user", "item", "tau", "liked", "disliked")}
    link = Link()
    if value["tab"]:
        if value["tab"] in TABS:
            link.tab = value["tab"]
        else:
            link.notices.append(f"The shared link names an unknown tab {html.escape(value['tab'][:40])!r}.")
    link.user = _known(explorer.user_index, value["user"][:40], link.notices)
    link.item = _known(explorer.item_index, value["item"][:40], link.notices)
    if value["tau"]:
        link.tau = _tau(value["tau"], link.notices)
    for side in ("liked", "disliked"):
        ids = [v.strip()[:40] for v in value[side].split(",") if v.strip()][: explorer.config.guest.max_picks]
        setattr(link, side, [i for i in ids if _known(explorer.item_index, i, link.notices)])
    return link


def _known(check, value: str, notices: list[str]) -> str | None:
    if not value:
        return None
    try:
        check(value)
        return value
    except UnknownIdError as err:
        log.warning("shared link: %s", err)
        notices.append(f"The shared link names {html.escape(str(err))}.")
        return None


def _tau(text: str, notices: list[str]) -> float | None:
    low, high = GATE_TAU_RANGE
    try:
        tau = float(text)
    except ValueError:
        tau = math.nan
    if not low <= tau <= high:  # also refuses NaN
        notices.append(f"The shared link's temperature {html.escape(text[:20])!r} is not a number from {low} to "
                       f"{high}; the default is used.")
        return None
    return tau


def page_address(request: gr.Request | None) -> str:
    """The page's public address (scheme, host, root path; behind a proxy, the forwarded ones), for links
    a visitor can copy; "" when unknown (the links are then relative)."""
    inner = getattr(request, "request", None) if request is not None else None
    if inner is None:
        return ""
    try:
        return get_root_url(inner, route_path=inner.url.path, root_path=inner.scope.get("root_path")) + "/"
    except (AttributeError, KeyError, ValueError) as err:
        log.warning("page address unknown: %s", err)
        return ""


def open_link(explorer: Explorer, request: gr.Request | None):
    """Widget updates for a page address: the Explore user and wanted item, the notice, the tab, the
    ablation's temperature, user and item, which tab the link opened, and the build tab's picks and
    target. A case goes to the tab the link names, so opening one tab runs nothing in another."""
    link = parse_link(explorer, dict(request.query_params) if request is not None else {})
    building, ablating = link.tab == "build", link.tab == "ablation"
    exploring = not (building or ablating)
    return (gr.update(value=link.user if exploring else None), link.item if exploring else None,
            " ".join(link.notices), gr.Tabs(selected=link.tab) if link.tab else gr.update(),
            gr.update(value=link.tau) if link.tau is not None else gr.update(),
            link.user if ablating else None, link.item if ablating else None, link.tab,
            gr.update(value=link.liked) if building else gr.update(),
            gr.update(value=link.disliked) if building else gr.update(),
            gr.update(value=link.item) if building else gr.update())

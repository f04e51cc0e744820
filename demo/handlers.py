"""Event handlers: plain functions of the backend facade and widget values, unit-testable
without a browser. Bad input becomes a friendly message, never a stack trace."""

from __future__ import annotations

import html
import logging
import random
import re
import time
from collections.abc import Callable, Iterator

import gradio as gr
import pandas as pd

from demo.charts import gate_chart, genre_chart, user_map_chart
from thinkrec import registry
from thinkrec.explorer import Case, Explanation, Explorer, UnknownIdError
from thinkrec.llm.generate import GenerationSettings

log = logging.getLogger(__name__)
SCORE_COLUMNS = ["system", "p_like", "verdict"]
NO_HELD_OUT = "This user has no held-out movies: search the catalogue below."
DECISIONS = {"single": "one expert answers", "fused": "experts are blended", "global": "the global model answers"}


def user_choices(explorer: Explorer) -> list[tuple[str, str]]:
    """Dropdown entries: a readable label per user (with the cluster, when there are experts), the raw id as value."""
    table = explorer.users_table()
    clusters = explorer.clusters
    return [(f"User {r.user_id} · {r.age} · {r.gender} · {r.occupation} · {r.activity} ({r.n_train} ratings)"
             + (f" · cluster {clusters[n] + 1}" if clusters is not None else ""), r.user_id)
            for n, r in enumerate(table.itertuples())]


def system_choices(explorer: Explorer) -> list[tuple[str, str]]:
    return [(registry.label(name), name) for name in explorer.llm_systems()]


def random_user(explorer: Explorer) -> str:
    return random.choice(explorer.users_table()["user_id"].tolist())


def profile_markdown(explorer: Explorer, user_id: str) -> str:
    profile = explorer.profile(user_id)
    features = ", ".join(f"{k}: {html.escape(v)}" for k, v in profile.features.items())
    liked = profile.history[profile.history["liked"]].head(8)["title"].tolist()
    disliked = profile.history[~profile.history["liked"]].head(8)["title"].tolist()
    cluster = explorer.cluster_of(user_id)
    return "\n\n".join([
        f"### User {html.escape(profile.user_id)}" + (f" · cluster {cluster}" if cluster else ""),
        (f"{features} · **{profile.activity}** rater · {profile.n_train} train ratings, "
         f"{profile.like_rate:.0%} liked"),
        (f"**Favours:** {', '.join(profile.liked_genres) or 'no clear favourite'} · "
         f"**Avoids:** {', '.join(profile.disliked_genres) or 'nothing in particular'}"),
        f"**Recently liked:** {', '.join(map(html.escape, liked)) or '—'}",
        f"**Recently disliked:** {', '.join(map(html.escape, disliked)) or '—'}",
    ])


def gate_markdown(route) -> str:
    if route is None:
        return "_No cluster experts are trained yet: ThinkRec answers with its global expert._"
    return f"**Routing: {DECISIONS[route.decision]}.** {html.escape(route.reason)}"


def share_markdown(user_id: str | None, item_id: str | None) -> str:
    if not user_id or not item_id:
        return ""
    return f"🔗 Share this case: append `?user={html.escape(user_id)}&item={html.escape(item_id)}` to the page address."


def map_figure(explorer: Explorer, user_id: str | None):
    """The UMAP map with ``user_id`` starred; None when no map was trained."""
    table = explorer.map_table()
    return None if table is None else user_map_chart(table, explorer.centroid_coords(), user_id)


def select_user(explorer: Explorer, user_id: str | None, wanted_item: str | None = None):
    """Profile card, genre chart, the user's test items (or the item a link or a case asks for), the gate
    chart and its reason, and the map with the user highlighted."""
    empty_items = gr.update(choices=[], value=None)
    if not user_id:
        return "Pick a user to begin.", None, empty_items, None, "", map_figure(explorer, None)
    try:
        profile = explorer.profile(user_id)
        tests = explorer.test_items(user_id)
        route = explorer.gate(user_id)
        if wanted_item:
            explorer.item_index(wanted_item)
    except UnknownIdError as err:
        log.warning("select_user: %s", err)
        return (f"**Cannot show this user:** {html.escape(str(err))}", None, empty_items, None, "",
                map_figure(explorer, None))
    choices = [(f"{'👍' if liked else '👎'} {title}", item_id)
               for item_id, title, liked in tests.itertuples(index=False)]
    value = choices[0][1] if choices else None
    if wanted_item:
        if wanted_item not in [v for _, v in choices]:
            choices.append((explorer.item_label(explorer.item_index(wanted_item)), wanted_item))
        value = wanted_item
    return (profile_markdown(explorer, user_id), genre_chart(profile.genre_counts),
            gr.update(choices=choices, value=value, info=None if choices else NO_HELD_OUT),
            gate_chart(route) if route else None, gate_markdown(route), map_figure(explorer, user_id))


def search_titles(explorer: Explorer, query: str):
    """Catalogue items matching the query, for the 'any movie' picker."""
    found = explorer.search_items(query or "")
    choices = [(title, item_id) for item_id, title in found.itertuples(index=False)]
    note = f"{len(choices)} match(es)" if query else ""
    return gr.update(choices=choices, value=choices[0][1] if choices else None), note


def compare_systems(explorer: Explorer, user_id: str | None, item_id: str | None, with_llm: bool = True):
    """System-1 (and, with ``with_llm``, every LLM system's) scores for the chosen pair, with the true
    outcome when it is known. The UI shows the instant System-1 rows first and the LLM rows after
    the reasoning, so the stream does not wait for them."""
    if not user_id or not item_id:
        return pd.DataFrame(columns=SCORE_COLUMNS), "Pick a user and an item."
    try:
        case = explorer.case(user_id, item_id)
        parts = [explorer.system1_scores(case)]
        if with_llm:
            parts.append(explorer.llm_scores(case))
        table = pd.concat(parts, ignore_index=True)
        truth = case.truth
        title = explorer.item_label(case.item)
    except UnknownIdError as err:
        log.warning("compare_systems: %s", err)
        return pd.DataFrame(columns=SCORE_COLUMNS), f"**Cannot score:** {html.escape(str(err))}"
    outcome = "unknown (not a held-out interaction)" if truth is None else ("liked it" if truth else "did not like it")
    return table, f"**{html.escape(title)}** · what really happened: {outcome}"


def highlight(text: str, grounded: list[str], ungrounded: list[str]) -> str:
    """The reasoning as safe HTML with cited titles marked found (✓) or not found (✗) in the history."""
    safe = html.escape(text)
    for title, css, mark in [(t, "cited-ok", "✓") for t in grounded] + [(t, "cited-missing", "✗") for t in ungrounded]:
        pattern = re.compile(re.escape(html.escape(title)), re.IGNORECASE)
        safe = pattern.sub(lambda m, css=css, mark=mark: f'<mark class="{css}">{m.group(0)} {mark}</mark>', safe,
                           count=1)
    return safe


def think(explorer: Explorer, user_id: str | None, item_id: str | None, system: str | None, max_new_tokens: float):
    """Stream the chosen system's answer: verdict and P(Yes) first, then the reasoning, token by token."""
    if not user_id or not item_id or not system:
        yield "Pick a user, a movie and a system.", "", ""
        return
    yield from stream_answer(explorer, lambda: explorer.case(user_id, item_id), system, max_new_tokens)


def stream_answer(explorer: Explorer, make_case: Callable[[], Case], system: str, max_new_tokens: float):
    """(verdict, reasoning HTML, prompt) as the answer to ``make_case()`` streams in; a case or a setting
    that cannot be answered gives a message instead."""
    try:
        settings = GenerationSettings.from_config(explorer.config.llm, max_new_tokens=int(max_new_tokens))
        run = explorer.explain(make_case(), system, settings)
    except (UnknownIdError, ValueError, TypeError) as err:  # GuestError is a ValueError
        log.warning("cannot explain: %s", err)
        yield f"**Cannot explain this case:** {html.escape(str(err))}", "", ""
        return
    yield "_Thinking…_", "", run.prompt
    for verdict, reasoning in stream_explanation(explorer, run):
        yield verdict, reasoning, run.prompt


def stream_explanation(explorer: Explorer, run: Explanation) -> Iterator[tuple[str, str]]:
    """(verdict line, reasoning HTML) as an answer streams in; the last pair marks the cited titles
    and says how long the answer took."""
    text, verdict, started = "", "", time.perf_counter()
    try:
        for piece in run.stream:
            text += piece
            verdict = verdict or verdict_line(run.p_yes, run.truth)
            yield verdict, html.escape(text)
    except RuntimeError as err:
        log.warning("generation failed: %s", err)
        yield verdict, html.escape(text) + "<br><em>(generation stopped: the model failed)</em>"
        return
    grounded, ungrounded = explorer.grounding(text, run.allowed)
    seconds = time.perf_counter() - started
    note = (f"<br><small>{run.stream.new_tokens} tokens in {seconds:.1f} s · cited titles: {len(grounded)} found in "
            f"the history, {len(ungrounded)} not</small>")
    yield verdict or verdict_line(run.p_yes, run.truth), highlight(text, grounded, ungrounded) + note


def verdict_line(p_yes: float | None, truth: bool | None) -> str:
    known = "" if truth is None else f" · truth: {'liked' if truth else 'not liked'}"
    if p_yes is None:
        return "_No verdict: the model produced no answer._" + known
    return f"**P(Yes) = {p_yes:.3f}** → {'Yes' if p_yes > 0.5 else 'No'}{known}"


def pick_case(value: str | None):
    """A curated case ("<user_id>|<item_id>") -> the user picker and the item to open."""
    if not value or "|" not in value:
        return gr.update(), None
    user_id, item_id = value.split("|", 1)
    return gr.update(value=user_id), item_id


def open_case(evt: gr.SelectData):
    """A click on a row of the analysts' table opens that case in the Explore tab."""
    row = list(evt.row_value or [])
    if len(row) < 2:
        return gr.update(), None, gr.update()
    return gr.update(value=str(row[0])), str(row[1]), gr.Tabs(selected="explore")

"""Event handlers: plain functions of the backend facade and widget values, unit-testable
without a browser. Bad input becomes a friendly message, never a stack trace."""

from __future__ import annotations

import html
import logging

import gradio as gr
import pandas as pd

from demo.charts import genre_chart
from thinkrec.explorer import Explorer, UnknownIdError

log = logging.getLogger(__name__)


def user_choices(explorer: Explorer) -> list[tuple[str, str]]:
    """Dropdown entries: a readable label per user, the raw id as value."""
    table = explorer.users_table()
    return [(f"User {r.user_id} · {r.age} · {r.gender} · {r.occupation} · {r.activity} ({r.n_train} ratings)", r.user_id)
            for r in table.itertuples()]


def profile_markdown(explorer: Explorer, user_id: str) -> str:
    profile = explorer.profile(user_id)
    features = ", ".join(f"{k}: {html.escape(v)}" for k, v in profile.features.items())
    liked = profile.history[profile.history["liked"]].head(8)["title"].tolist()
    disliked = profile.history[~profile.history["liked"]].head(8)["title"].tolist()
    return "\n".join([
        f"### User {html.escape(profile.user_id)}",
        f"{features} · **{profile.activity}** rater · {profile.n_train} train ratings, "
        f"{profile.like_rate:.0%} liked",
        f"**Favours:** {', '.join(profile.liked_genres) or 'no clear favourite'} · "
        f"**Avoids:** {', '.join(profile.disliked_genres) or 'nothing in particular'}",
        f"**Recently liked:** {', '.join(map(html.escape, liked)) or '—'}",
        f"**Recently disliked:** {', '.join(map(html.escape, disliked)) or '—'}",
    ])


def select_user(explorer: Explorer, user_id: str | None):
    """Profile card, genre chart and the user's test items for the item picker."""
    if not user_id:
        return "Pick a user to begin.", None, gr.update(choices=[], value=None)
    try:
        profile = explorer.profile(user_id)
        tests = explorer.test_items(user_id)
    except UnknownIdError as err:
        log.warning("select_user: %s", err)
        return f"**Cannot show this user:** {html.escape(str(err))}", None, gr.update(choices=[], value=None)
    choices = [(f"{'👍' if liked else '👎'} {title}", item_id)
               for item_id, title, liked in tests.itertuples(index=False)]
    return (profile_markdown(explorer, user_id), genre_chart(profile.genre_counts),
            gr.update(choices=choices, value=choices[0][1] if choices else None))


def compare_systems(explorer: Explorer, user_id: str | None, item_id: str | None):
    """The System-1 scores for the chosen pair, with the true outcome when it is known."""
    if not user_id or not item_id:
        return pd.DataFrame(columns=["system", "p_like", "verdict"]), "Pick a user and an item."
    try:
        table = explorer.system1_scores(user_id, item_id)
        truth = explorer.true_label(user_id, item_id)
        title = explorer.item_label(explorer.item_index(item_id))
    except UnknownIdError as err:
        log.warning("compare_systems: %s", err)
        return pd.DataFrame(columns=["system", "p_like", "verdict"]), f"**Cannot score:** {html.escape(str(err))}"
    outcome = "unknown (not a held-out interaction)" if truth is None else ("liked it" if truth else "did not like it")
    return table, f"**{html.escape(title)}** · what really happened: {outcome}"

"""``build_demo``: the Gradio Blocks of ThinkRec Explorer, built without launching a server."""

from __future__ import annotations

from functools import partial

import gradio as gr

from demo import handlers
from thinkrec.explorer import Explorer

TITLE = "ThinkRec Explorer"


def build_demo(explorer: Explorer) -> gr.Blocks:
    """The whole UI, wired to one backend facade."""
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\nPick a MovieLens user, see their taste, and compare what the System-1 "
                    "recommenders predict for the movies they rated last.")
        with gr.Tab("Explore"):
            with gr.Row():
                with gr.Column(scale=1):
                    user = gr.Dropdown(handlers.user_choices(explorer), label="User", elem_id="user-picker")
                    profile = gr.Markdown("Pick a user to begin.", elem_id="profile-card")
                    genres = gr.Plot(label="Taste", elem_id="genre-chart")
                with gr.Column(scale=1):
                    item = gr.Dropdown([], label="Held-out movie (👍 liked / 👎 not)", elem_id="item-picker")
                    outcome = gr.Markdown(elem_id="outcome")
                    scores = gr.Dataframe(label="System-1 predictions", elem_id="system1-table", interactive=False)
        with gr.Tab("Results"):
            gr.Dataframe(explorer.results_table(), label="Test AUC / UAUC", interactive=False)
        user.change(partial(handlers.select_user, explorer), user, [profile, genres, item])
        item.change(partial(handlers.compare_systems, explorer), [user, item], [scores, outcome])
    return demo

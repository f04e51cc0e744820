"""``build_demo``: the Gradio Blocks of ThinkRec Explorer, built without launching a server."""

from __future__ import annotations

from functools import partial

import gradio as gr
import pandas as pd

from demo import handlers
from thinkrec.explorer import Explorer

TITLE = "ThinkRec Explorer"
CSS = """
mark.cited-ok { background: #d8f3dc; }
mark.cited-missing { background: #ffd6d6; }
"""


def build_demo(explorer: Explorer) -> gr.Blocks:
    """The whole UI, wired to one backend facade."""
    systems = handlers.system_choices(explorer)
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\nPick a MovieLens user, watch ThinkRec reason about a movie they rated, and "
                    "compare it with System-1 recommenders that answer without thinking.")
        notice = gr.Markdown(elem_id="notice")
        wanted_item = gr.State(None)
        with gr.Tab("Explore"):
            with gr.Row():
                with gr.Column(scale=1):
                    with gr.Row():
                        user = gr.Dropdown(handlers.user_choices(explorer), label="User", elem_id="user-picker",
                                           scale=4)
                        lucky = gr.Button("🎲 Random", scale=1)
                    profile = gr.Markdown("Pick a user to begin.", elem_id="profile-card")
                    genres = gr.Plot(label="Taste", elem_id="genre-chart")
                    gate = gr.Plot(label="Gate", elem_id="gate-chart")
                    gate_reason = gr.Markdown(elem_id="gate-reason")
                with gr.Column(scale=1):
                    item = gr.Dropdown([], label="Held-out movie (👍 liked / 👎 not)", elem_id="item-picker")
                    with gr.Accordion("…or any movie from the catalogue", open=False):
                        query = gr.Textbox(label="Title search", max_length=200)
                        found_note = gr.Markdown()
                    with gr.Row():
                        system = gr.Radio(systems, value=systems[0][1] if systems else None, label="Who thinks",
                                          elem_id="system-picker")
                        length = gr.Slider(16, 256, value=120, step=8, label="Max new tokens")
                    go_button = gr.Button("Think", variant="primary", elem_id="think")
                    verdict = gr.Markdown(elem_id="verdict")
                    reasoning = gr.HTML(elem_id="reasoning")
                    with gr.Accordion("Show the exact prompt", open=False):
                        prompt = gr.Code(label="Prompt (⟨CF …⟩ marks a soft token)", language=None,
                                         elem_id="prompt")
                    outcome = gr.Markdown(elem_id="outcome")
                    scores = gr.Dataframe(pd.DataFrame(columns=handlers.SCORE_COLUMNS),
                                          label="Every system's prediction", elem_id="system1-table",
                                          interactive=False)
                    share = gr.Markdown(elem_id="share")
        with gr.Tab("Results"):
            gr.Dataframe(explorer.results_table(), label="Test AUC / UAUC", interactive=False)
        think = partial(handlers.think, explorer)
        lucky.click(partial(handlers.random_user, explorer), None, user)
        def open_shared_link(request: gr.Request):  # gradio injects the request only into a plain signature
            return handlers.from_url(explorer, request)

        demo.load(open_shared_link, None, [user, wanted_item, notice])
        user.change(partial(handlers.select_user, explorer), [user, wanted_item],
                    [profile, genres, item, gate, gate_reason])
        item.change(handlers.share_markdown, [user, item], share)
        query.submit(partial(handlers.search_titles, explorer), query, [item, found_note])
        item.change(partial(handlers.compare_systems, explorer), [user, item], [scores, outcome]).then(
            think, [user, item, system, length], [verdict, reasoning, prompt])
        go_button.click(think, [user, item, system, length], [verdict, reasoning, prompt])
    return demo

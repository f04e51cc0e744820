"""Plotly figures of the demo (the backend never imports plotly)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

LIKE_COLOUR, DISLIKE_COLOUR = "#2a9d8f", "#e76f51"


def genre_chart(genre_counts: pd.DataFrame) -> go.Figure:
    """Stacked horizontal bars: how many of the user's train ratings per genre were likes / dislikes."""
    frame = genre_counts.sort_values("liked", ascending=True)
    figure = go.Figure([
        go.Bar(y=frame["genre"], x=frame["liked"], name="liked", orientation="h", marker_color=LIKE_COLOUR),
        go.Bar(y=frame["genre"], x=frame["disliked"], name="disliked", orientation="h", marker_color=DISLIKE_COLOUR),
    ])
    figure.update_layout(barmode="stack", height=max(240, 22 * len(frame) + 80), margin=dict(l=10, r=10, t=30, b=10),
                         title="Train ratings by genre", legend=dict(orientation="h", y=-0.1))
    return figure


def gate_chart(route) -> go.Figure:
    """The gate's weight per expert; the expert(s) actually used are drawn solid."""
    names = [f"Expert {k + 1}" for k in range(len(route.weights))]
    used = [route.mixture[k + 1] > 0 for k in range(len(route.weights))]
    colours = [LIKE_COLOUR if u else "#c9d6df" for u in used]
    figure = go.Figure(go.Bar(x=names, y=list(route.weights), marker_color=colours,
                              text=[f"{w:.0%}" for w in route.weights], textposition="outside"))
    figure.update_layout(height=240, margin=dict(l=10, r=10, t=30, b=10), yaxis=dict(range=[0, 1.1], title="weight"),
                         title="Gate weights")
    return figure

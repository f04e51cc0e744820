"""Plotly figures of the demo (the backend never imports plotly)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go

LIKE_COLOUR, DISLIKE_COLOUR = "#2a9d8f", "#e76f51"
CLUSTER_COLOURS = ["#457b9d", "#e9a23b", "#2a9d8f", "#b5179e", "#6a994e", "#8d99ae"]


def genre_chart(genre_counts: pd.DataFrame) -> go.Figure:
    """Stacked horizontal bars: how many of the user's train ratings per genre were likes / dislikes."""
    frame = genre_counts.sort_values("liked", ascending=True)
    figure = go.Figure([
        go.Bar(y=frame["genre"], x=frame["liked"], name="liked", orientation="h", marker_color=LIKE_COLOUR),
        go.Bar(y=frame["genre"], x=frame["disliked"], name="disliked", orientation="h", marker_color=DISLIKE_COLOUR),
    ])
    figure.update_layout(barmode="stack", height=max(240, 22 * len(frame) + 80),
                         margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         title="Train ratings by genre", legend={"orientation": "h", "y": -0.1})
    return figure


def gate_chart(route) -> go.Figure:
    """The gate's weight per expert; the expert(s) actually used are drawn solid."""
    names = [f"Expert {k + 1}" for k in range(len(route.weights))]
    used = [route.mixture[k + 1] > 0 for k in range(len(route.weights))]
    colours = [LIKE_COLOUR if u else "#c9d6df" for u in used]
    figure = go.Figure(go.Bar(x=names, y=list(route.weights), marker_color=colours,
                              text=[f"{w:.0%}" for w in route.weights], textposition="outside", cliponaxis=False))
    figure.update_layout(height=240, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         yaxis={"range": [0, 1.1], "title": "weight"},
                         title="Gate weights")
    return figure


DECISION_COLOURS = {"single": "#e8f1f8", "fused": "#fdf0d5", "global": "#eeeeee"}


def gate_sweep_chart(taus: list[float], routes: list, current_tau: float) -> go.Figure:
    """Each expert's gate weight across temperatures (log scale), the background shaded by the rule that
    fires there (one expert, a blend, the global model), a dashed line at the current temperature."""
    figure = go.Figure()
    start = 0
    for end in range(1, len(routes) + 1):  # one shaded band per run of the same decision
        if end == len(routes) or routes[end].decision != routes[start].decision:
            low, high = taus[start], taus[end - 1]
            figure.add_vrect(x0=low, x1=high, fillcolor=DECISION_COLOURS[routes[start].decision], line_width=0,
                             layer="below")
            # annotations on a log axis take log10 coordinates, shapes take data coordinates
            figure.add_annotation(x=math.log10(low * high) / 2, y=1.0, yanchor="bottom", showarrow=False,
                                  text=routes[start].decision, font={"size": 11})
            start = end
    for expert in range(len(routes[0].weights)):
        figure.add_trace(go.Scatter(x=taus, y=[r.weights[expert] for r in routes], mode="lines",
                                    name=f"Expert {expert + 1}",
                                    line={"color": CLUSTER_COLOURS[expert % len(CLUSTER_COLOURS)], "width": 2}))
    figure.add_vline(x=current_tau, line_dash="dash", line_color="#222")
    log_range = [math.log10(taus[0]), math.log10(taus[-1])]  # a log axis's range is given in log10 units
    figure.update_layout(height=260, margin={"l": 10, "r": 10, "t": 30, "b": 10}, title="Gate weights across τ",
                         xaxis={"type": "log", "title": "temperature τ", "range": log_range},
                         yaxis={"range": [0, 1.12], "title": "weight"}, legend={"orientation": "h", "y": -0.5})
    return figure



def user_map_chart(table: pd.DataFrame, centroids, selected: str | None,
                   guest: tuple[float, float] | None = None) -> go.Figure:
    """Every user on the UMAP map, coloured by cluster, centroids marked, the selected user (or a
    guest placed on the map at ``guest``) starred."""
    figure = go.Figure()
    hover = ("User %{customdata[0]} · %{customdata[1]} · %{customdata[2]} · %{customdata[3]}<br>"
             "%{customdata[4]} rater · cluster %{customdata[5]}<extra></extra>")
    for cluster, part in table.groupby("cluster"):
        colour = CLUSTER_COLOURS[(int(cluster) - 1) % len(CLUSTER_COLOURS)]
        data = part[["user_id", "age", "gender", "occupation", "activity", "cluster"]].to_numpy()
        figure.add_trace(go.Scattergl(x=part["x"], y=part["y"], mode="markers", name=f"Cluster {cluster}",
                                      marker={"size": 5, "color": colour, "opacity": 0.55}, customdata=data,
                                      hovertemplate=hover))
    if centroids is not None:
        figure.add_trace(go.Scatter(x=centroids[:, 0], y=centroids[:, 1], mode="markers+text", name="centroids",
                                    text=[f"C{k + 1}" for k in range(len(centroids))], textposition="top center",
                                    marker={"symbol": "x", "size": 12, "color": "#222"}, hoverinfo="skip"))
    chosen = table[table["user_id"] == selected]
    if len(chosen):
        _star(figure, chosen.iloc[0]["x"], chosen.iloc[0]["y"], f"User {selected}")
    if guest is not None:
        _star(figure, guest[0], guest[1], "You")
    figure.update_layout(height=360, margin={"l": 10, "r": 10, "t": 30, "b": 10}, title="Users on the cluster map",
                         xaxis={"visible": False}, yaxis={"visible": False}, legend={"orientation": "h", "y": -0.05})
    return figure


def _star(figure: go.Figure, x: float, y: float, label: str) -> None:
    figure.add_trace(go.Scatter(x=[x], y=[y], mode="markers", name=label, hoverinfo="skip",
                                marker={"symbol": "star", "size": 18, "color": "#e63946",
                                        "line": {"width": 1, "color": "#222"}}))
    figure.add_annotation(x=x, y=y, text=label, showarrow=True, arrowhead=2, ay=-30)


def results_chart(overall: pd.DataFrame, label: Callable[[str], str]) -> go.Figure:
    """AUC and UAUC of every system as grouped bars, with their user-bootstrap intervals as error bars;
    ``overall`` holds key, auc, auc_low, auc_high, uauc, uauc_low, uauc_high."""
    names = overall["key"].map(label)
    figure = go.Figure([
        go.Bar(x=names, y=overall[metric], name=metric.upper(), marker_color=colour,
               error_y={"type": "data", "symmetric": False, "array": overall[f"{metric}_high"] - overall[metric],
                        "arrayminus": overall[metric] - overall[f"{metric}_low"]})
        for metric, colour in (("auc", "#457b9d"), ("uauc", "#e9a23b"))])
    figure.update_layout(barmode="group", height=340, yaxis={"range": [0.3, 1.0], "title": "test rows"},
                         margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         title="Every system on the same test rows (bars: bootstrap interval, users resampled)")
    return figure


def slice_auc_chart(metrics: pd.DataFrame, systems: list[str], label: Callable[[str], str],
                    slice_label: str) -> go.Figure:
    """AUC per slice value (x, in the slice's order) for each of ``systems`` (in that order), with its
    user-bootstrap interval as error bars; ``metrics`` holds value, order, system, rows, users, auc, auc_low,
    auc_high."""
    figure = go.Figure()
    hover = ("%{x}: AUC %{y:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}]<br>%{customdata[2]} rows, "
             "%{customdata[3]} users<extra>%{fullData.name}</extra>")
    for number, system in enumerate(systems):
        part = metrics[metrics["system"] == system].sort_values("order")
        figure.add_trace(go.Scatter(
            x=part["value"], y=part["auc"], mode="markers", name=label(system),
            marker={"size": 9, "color": CLUSTER_COLOURS[number % len(CLUSTER_COLOURS)]}, offsetgroup=system,
            error_y={"type": "data", "symmetric": False, "array": part["auc_high"] - part["auc"],
                     "arrayminus": part["auc"] - part["auc_low"], "thickness": 1.5},
            customdata=part[["auc_low", "auc_high", "rows", "users"]].to_numpy(), hovertemplate=hover))
    figure.add_hline(y=0.5, line_dash="dot", line_color="#999", annotation_text="chance", annotation_position="right")
    figure.update_layout(height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10}, scattermode="group",
                         title=f"AUC by {slice_label} (bars: bootstrap interval, users resampled)",
                         xaxis={"type": "category", "title": slice_label}, yaxis={"title": "AUC"},
                         legend={"orientation": "h", "y": -0.25})
    return figure


def reliability_chart(calibration: pd.DataFrame, systems: list[str], errors: dict[str, float],
                      label: Callable[[str], str]) -> go.Figure:
    """Reliability diagram: the like-rate against the mean P(like) of every non-empty bin, for each of
    ``systems`` (ECE in the legend), over the diagonal a calibrated model would follow."""
    figure = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="calibrated", hoverinfo="skip",
                                  line={"dash": "dash", "color": "#999"}))
    hover = ("P(like) %{customdata[0]:.1f}-%{customdata[1]:.1f}: mean %{x:.3f}, like-rate %{y:.3f}, "
             "%{customdata[2]} rows<extra>%{fullData.name}</extra>")
    for number, system in enumerate(systems):
        filled = calibration[(calibration["system"] == system) & (calibration["rows"] > 0)]
        figure.add_trace(go.Scatter(
            x=filled["mean_p"], y=filled["like_rate"], mode="lines+markers",
            name=f"{label(system)} (ECE {errors.get(system, math.nan):.3f})",
            line={"color": CLUSTER_COLOURS[number % len(CLUSTER_COLOURS)]},
            marker={"size": 5 + 12 * (filled["rows"] / max(filled["rows"].max(), 1)) ** 0.5},
            customdata=filled[["low", "high", "rows"]].to_numpy(), hovertemplate=hover))
    figure.update_layout(height=420, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                         title="Reliability: how often a like follows each P(like) (marker size: rows)",
                         xaxis={"range": [0, 1], "title": "mean P(like) in the bin"},
                         yaxis={"range": [0, 1], "title": "like-rate in the bin"},
                         legend={"orientation": "h", "y": -0.2})
    return figure

"""Choosing the clustering before any expert is trained fully: cheap measures of every candidate
(method, K) and the one rule that picks from them.

Measures of a candidate: the silhouette and Cohen's d of activity (``fusion.clusters``), the cluster
sizes, the fewest training traces a cluster holds, and where the shipped gate sends every user:

- ``single_own``: to their own cluster's expert alone;
- ``fused_own``: to a fusion of experts in which their own cluster's expert weighs most;
- ``global``: to the global adapter;
- ``single_other`` / ``fused_other``: to another cluster's expert alone, or as the heaviest of a fusion.

``own_share`` is ``single_own`` + ``fused_own``. With ``fusion.probe_experts`` a candidate also carries
``valid``, the fused valid AUC of small-budget experts.

The rule (``choose``, stated in ``RULE``):

1. a candidate is eligible when its gate sends at least ``min_own_share`` of the users to their own
   cluster's expert: an expert learns only its cluster's rows, so those are the users it should answer;
2. among the eligible, the highest probe valid AUC when every eligible candidate has one, otherwise the
   largest Cohen's d of activity (the paper: the gain from experts grows with how much the groups differ);
3. ties go to the higher silhouette, then to the smaller K;
4. when no candidate is eligible, the one with the highest own share.
"""

from __future__ import annotations

import math

import numpy as np

from thinkrec.config import GateSettings
from thinkrec.fusion.clusters import Clustering
from thinkrec.fusion.gate import Gate

ROUTES = ("single_own", "fused_own", "global", "single_other", "fused_other")
RULE = ("eligible: the gate routes at least {min_own:.0%} of users to their own cluster's expert (alone, or "
        "weighing most in a fusion); among the eligible, the highest probe valid AUC when every one has it, else "
        "the largest Cohen's d of activity; ties: higher silhouette, then smaller K; none eligible: the highest "
        "own share")


def routing_shares(gate: Gate, raw_vectors: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The share of users the gate sends each way (``ROUTES``), from their raw CF vectors and cluster labels."""
    counts = dict.fromkeys(ROUTES, 0)
    for route, own in zip(gate.route_users(raw_vectors), labels, strict=True):
        if route.decision == "global":
            counts["global"] += 1
            continue
        heaviest = route.expert if route.decision == "single" else int(np.argmax(route.weights))
        counts[f"{route.decision}_{'own' if heaviest == own else 'other'}"] += 1
    return {key: round(count / len(labels), 4) for key, count in counts.items()}


def candidate_measures(clustering: Clustering, raw_vectors: np.ndarray, gate: GateSettings,
                       trace_users: np.ndarray) -> dict:
    """The cheap measures of one candidate clustering (no training); ``trace_users`` holds the user of every
    training trace."""
    shares = routing_shares(Gate(clustering, gate), raw_vectors, clustering.labels)
    traces = np.bincount(clustering.labels[np.asarray(trace_users, dtype=np.int64)], minlength=clustering.k)
    return {"method": clustering.method, "k": clustering.k, "sizes": list(clustering.sizes),
            "silhouette": _rounded(clustering.silhouette), "cohens_d": _rounded(clustering.cohens_d),
            "routing": shares, "own_share": round(shares["single_own"] + shares["fused_own"], 4),
            "fewest_traces": int(traces.min())}


def choose(candidates: list[dict], min_own_share: float) -> tuple[dict, str]:
    """The candidate the rule picks (see the module's docstring), with a sentence saying why."""
    if not candidates:
        raise ValueError("no candidate clusterings to choose from (fusion.methods and fusion.ks are empty)")
    eligible = [c for c in candidates if c["own_share"] >= min_own_share]
    if not eligible:
        best = max(candidates, key=lambda c: (c["own_share"], _value(c["silhouette"]), -c["k"]))
        return best, (f"no candidate routes {min_own_share:.0%} of users to their own cluster's expert; "
                      f"{_name(best)} comes nearest ({best['own_share']:.1%})")
    probed = all("valid" in c for c in eligible)
    measure = "probe valid AUC" if probed else "Cohen's d of activity"

    def key(c: dict) -> tuple:
        primary = (_value(c["valid"]["auc"]),) if probed else ()
        return (*primary, _value(c["cohens_d"]), _value(c["silhouette"]), -c["k"])

    best = max(eligible, key=key)
    shown = best["valid"]["auc"] if probed else best["cohens_d"]
    return best, (f"{_name(best)} routes {best['own_share']:.1%} of users to their own cluster's expert (at least "
                  f"{min_own_share:.0%} needed, {len(eligible)} of {len(candidates)} candidates eligible) and has the "
                  f"highest {measure} among the eligible ({shown})")


def rule_text(min_own_share: float) -> str:
    return RULE.format(min_own=min_own_share)


def _name(candidate: dict) -> str:
    return f"{candidate['method']} K={candidate['k']}"


def _rounded(value: float | None) -> float | None:
    """JSON has no NaN: a measure that is not defined is stored as null."""
    return None if value is None or math.isnan(value) else round(float(value), 4)


def _value(value: float | None) -> float:
    """A measure for ranking: undefined ranks below everything."""
    return -math.inf if value is None or math.isnan(value) else float(value)

"""Choosing the clustering by cheap measures: where the gate routes users, and the rule that picks."""

from __future__ import annotations

import numpy as np
import pytest

from thinkrec.config import GateSettings
from thinkrec.fusion.choice import ROUTES, candidate_measures, choose, routing_shares
from thinkrec.fusion.clusters import cluster_users
from thinkrec.fusion.gate import Gate


def planted_users(per_cluster: int = 30, k: int = 3, dims: int = 8, seed: int = 0) -> np.ndarray:
    """Users around ``k`` well-separated centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dims)) * 5
    return np.concatenate([centre + rng.normal(scale=0.3, size=(per_cluster, dims)) for centre in centres])


@pytest.fixture
def planted():
    vectors = planted_users()
    clustering = cluster_users(vectors, 3, "kmeans", 0, activity=np.arange(len(vectors), dtype=float))
    return vectors, clustering, Gate(clustering, GateSettings())


def test_a_planted_clustering_routes_every_user_to_their_own_expert(planted):
    vectors, clustering, gate = planted
    shares = routing_shares(gate, vectors, clustering.labels)
    assert shares == {"single_own": 1.0, "fused_own": 0.0, "global": 0.0, "single_other": 0.0, "fused_other": 0.0}


def test_users_labelled_against_the_geometry_count_as_routed_elsewhere(planted):
    vectors, clustering, gate = planted
    labels = clustering.labels.copy()
    moved = np.flatnonzero(labels == 0)[:6]
    labels[moved] = 1  # their vectors still sit in cluster 0, so the gate sends them to expert 0
    shares = routing_shares(gate, vectors, labels)
    assert shares["single_other"] == round(6 / len(vectors), 4)
    assert shares["single_own"] == round(1 - 6 / len(vectors), 4)


def test_an_undecided_user_is_fused_and_an_average_user_goes_to_the_global_adapter(planted):
    vectors, clustering, gate = planted
    means = [vectors[clustering.labels == c].mean(axis=0) for c in range(3)]
    path = [t * means[0] + (1 - t) * means[1] for t in np.linspace(0, 1, 201)]  # from cluster 1 over to cluster 0
    between = next(v for v in path if gate.route_user(v).decision == "fused" and np.argmax(gate.weights(v)) == 0)
    average = clustering.standardiser.mean  # standardised to zero: the same cosine to every centroid
    assert gate.route_user(average).decision == "global"
    extra = np.stack([between, between, average])
    shares = routing_shares(gate, np.concatenate([vectors, extra]), np.r_[clustering.labels, 0, 2, 1])
    total = len(vectors) + 3
    assert shares["fused_own"] == round(1 / total, 4) and shares["fused_other"] == round(1 / total, 4)
    assert shares["global"] == round(1 / total, 4) and sum(shares.values()) == pytest.approx(1.0, abs=1e-3)


def test_the_measures_count_each_clusters_traces(planted):
    vectors, clustering, _ = planted
    trace_users = np.r_[np.flatnonzero(clustering.labels == 0)[:5], np.flatnonzero(clustering.labels == 1)[:2],
                        np.flatnonzero(clustering.labels == 2)[:9]]
    row = candidate_measures(clustering, vectors, GateSettings(), trace_users)
    assert row["fewest_traces"] == 2 and row["own_share"] == 1.0 and set(row["routing"]) == set(ROUTES)
    assert row["silhouette"] == round(clustering.silhouette, 4) and row["sizes"] == [30, 30, 30]


def candidate(method: str, k: int, own: float, d: float | None, silhouette: float | None,
              auc: float | None = None) -> dict:
    row = {"method": method, "k": k, "own_share": own, "cohens_d": d, "silhouette": silhouette}
    return row | ({"valid": {"auc": auc, "uauc": None, "rows": 10}} if auc is not None else {})


def test_the_rule_takes_the_largest_cohens_d_among_clusterings_whose_gate_keeps_users_home():
    table = [candidate("kmeans", 2, 0.97, 0.99, 0.27), candidate("kmeans", 5, 0.979, 1.34, 0.19),
             candidate("ward", 5, 0.86, 1.40, 0.14)]  # ward has the largest d but sends 14 % elsewhere
    chosen, reason = choose(table, 0.95)
    assert (chosen["method"], chosen["k"]) == ("kmeans", 5)
    assert "2 of 3 candidates eligible" in reason and "Cohen's d" in reason


def test_the_rule_takes_the_probe_auc_when_every_eligible_candidate_has_one():
    table = [candidate("kmeans", 2, 0.97, 0.99, 0.27, auc=0.83), candidate("kmeans", 5, 0.98, 1.34, 0.19, auc=0.82),
             candidate("ward", 3, 0.80, 1.40, 0.14, auc=0.90)]
    assert choose(table, 0.95)[0]["k"] == 2
    table[0].pop("valid")  # one eligible candidate was not probed: the cheap measure decides
    assert choose(table, 0.95)[0]["k"] == 5


def test_ties_go_to_the_higher_silhouette_then_the_smaller_k_and_undefined_measures_rank_last():
    table = [candidate("kmeans", 3, 0.99, 1.0, 0.20), candidate("ward", 3, 0.99, 1.0, 0.25),
             candidate("kmeans", 4, 0.99, None, 0.9)]
    assert choose(table, 0.95)[0]["method"] == "ward"
    table = [candidate("kmeans", 4, 0.99, 1.0, 0.2), candidate("kmeans", 3, 0.99, 1.0, 0.2)]
    assert choose(table, 0.95)[0]["k"] == 3


def test_with_no_eligible_candidate_the_rule_takes_the_highest_own_share_and_says_so():
    table = [candidate("ward", 2, 0.85, 0.97, 0.23), candidate("ward", 3, 0.88, 1.05, 0.19)]
    chosen, reason = choose(table, 0.95)
    assert chosen["k"] == 3 and reason.startswith("no candidate routes 95%")
    with pytest.raises(ValueError, match="no candidate clusterings"):
        choose([], 0.95)

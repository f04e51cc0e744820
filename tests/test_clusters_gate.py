"""User clusters, the expert gate and the user map, on small synthetic data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from thinkrec.errors import CheckpointError
from thinkrec.fusion.clusters import (
    Clustering,
    Standardiser,
    candidate_clusterings,
    cluster_users,
    cohens_d_activity,
    load_clustering,
    save_clustering,
)
from thinkrec.fusion.gate import Gate, GateSettings, gate_weights, route
from thinkrec.fusion.user_map import UserMap, fit_user_map, load_user_map, save_user_map


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian blobs in 8 dimensions, 40 points each, with their true labels."""
    rng = np.random.default_rng(0)
    centres = 4.0 * rng.normal(size=(3, 8))
    truth = np.repeat(np.arange(3), 40)
    return centres[truth] + rng.normal(size=(120, 8)), truth


@pytest.fixture(scope="module")
def blob_clustering(blobs) -> Clustering:
    points, truth = blobs
    return cluster_users(points, 3, "kmeans", seed=0, activity=truth * 10.0 + np.arange(120) % 7, encoder="toy")


# ---------------------------------------------------------------- clusters


def test_standardiser_centres_scales_and_keeps_constant_dimensions():
    x = np.array([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])
    standardiser = Standardiser.fit(x)
    assert standardiser.std.tolist() == pytest.approx([math.sqrt(8 / 3), 1.0])
    z = standardiser.transform(x)
    assert z.mean(axis=0) == pytest.approx([0.0, 0.0])
    assert z[:, 0].std() == pytest.approx(1.0) and (z[:, 1] == 0).all()
    with pytest.raises(ValueError, match="dimension 2"):
        standardiser.transform(np.zeros(3))


@pytest.mark.parametrize("spherical", [False, True])
@pytest.mark.parametrize("method", ["kmeans", "ward"])
def test_clustering_recovers_blobs(blobs, method, spherical):
    points, truth = blobs
    clustering = cluster_users(points, 3, method, seed=0, spherical=spherical)
    assert adjusted_rand_score(truth, clustering.labels) > 0.9
    assert -1.0 <= clustering.silhouette <= 1.0 and clustering.silhouette > 0.6
    assert sum(clustering.sizes) == 120 and list(clustering.sizes) == sorted(clustering.sizes, reverse=True)
    standardised = clustering.standardiser.transform(points)
    if spherical:  # clustered by angle: the centroids are means of the unit-length standardised vectors
        standardised = standardised / np.linalg.norm(standardised, axis=1, keepdims=True)
    for c in range(3):
        assert clustering.centroids[c] == pytest.approx(standardised[clustering.labels == c].mean(axis=0))
    assert clustering.cohens_d is None and clustering.cohens_d_pairs is None


def test_cohens_d_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    activity = np.array([1.0, 2, 3, 4, 5, 6, 10, 12])
    # means 2, 5, 11; sample variances 1, 1, 2; pooled sd: (0,1) 1, (0,2) and (1,2) sqrt(4/3)
    largest, pairs = cohens_d_activity(labels, activity)
    assert pairs[0, 1] == pytest.approx(-3.0) and pairs[1, 0] == pytest.approx(3.0)
    assert pairs[0, 2] == pytest.approx(-9 / math.sqrt(4 / 3))
    assert pairs[1, 2] == pytest.approx(-6 / math.sqrt(4 / 3))
    assert largest == pytest.approx(9 * math.sqrt(3) / 2)
    assert cohens_d_activity(np.zeros(4, dtype=int), np.arange(4.0))[0] == 0.0


def test_cohens_d_without_spread_is_nan():
    largest, pairs = cohens_d_activity(np.array([0, 1]), np.array([1.0, 2.0]))
    assert math.isnan(largest) and math.isnan(pairs[0, 1])


def test_candidates_are_sorted_and_carry_diagnostics(blobs):
    points, truth = blobs
    activity = truth * 20.0 + np.random.default_rng(2).poisson(30, size=len(truth))
    candidates = candidate_clusterings(points, activity, ks=(3, 2), methods=("ward", "kmeans"), seed=1)
    assert [(c.k, c.method) for c in candidates] == [(2, "kmeans"), (2, "ward"), (3, "kmeans"), (3, "ward")]
    assert all(math.isfinite(c.silhouette) and c.cohens_d > 0 for c in candidates)


def test_cluster_users_rejects_bad_arguments(blobs):
    points, _ = blobs
    with pytest.raises(ValueError, match="method"):
        cluster_users(points, 2, "dbscan")
    with pytest.raises(ValueError, match="k must be"):
        cluster_users(points, 0)


def test_clustering_round_trip(tmp_path, blob_clustering):
    save_clustering(blob_clustering, tmp_path)
    loaded = load_clustering(tmp_path)
    for name in ("method", "k", "sizes", "silhouette", "cohens_d", "encoder"):
        assert getattr(loaded, name) == getattr(blob_clustering, name)
    np.testing.assert_array_equal(loaded.labels, blob_clustering.labels)
    np.testing.assert_array_equal(loaded.centroids, blob_clustering.centroids)
    np.testing.assert_array_equal(loaded.cohens_d_pairs, blob_clustering.cohens_d_pairs)
    np.testing.assert_array_equal(loaded.standardiser.mean, blob_clustering.standardiser.mean)
    np.testing.assert_array_equal(loaded.standardiser.std, blob_clustering.standardiser.std)


def _damage_centroids_shape(folder: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"centroids": np.zeros((3, 5))}, folder / "centroids.safetensors")


@pytest.mark.parametrize("damage, culprit", [
    (lambda f: (f / "clusters.json").unlink(), "clusters.json"),
    (lambda f: (f / "clusters.json").write_text("{not json", encoding="utf-8"), "clusters.json"),
    (lambda f: (f / "clusters.json").write_text('{"k": 3}', encoding="utf-8"), "clusters.json"),
    (lambda f: (f / "centroids.safetensors").unlink(), "centroids.safetensors"),
    (lambda f: (f / "centroids.safetensors").write_bytes(b"garbage"), "centroids.safetensors"),
    (_damage_centroids_shape, "centroids.safetensors"),
])
def test_damaged_clustering_names_the_file(tmp_path, blob_clustering, damage, culprit):
    save_clustering(blob_clustering, tmp_path)
    damage(tmp_path)
    with pytest.raises(CheckpointError, match=culprit):
        load_clustering(tmp_path)


def test_inconsistent_labels_are_rejected(tmp_path, blob_clustering):
    save_clustering(blob_clustering, tmp_path)
    meta = json.loads((tmp_path / "clusters.json").read_text(encoding="utf-8"))
    meta["labels"][0] = 7
    (tmp_path / "clusters.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(CheckpointError, match="clusters.json"):
        load_clustering(tmp_path)


# ---------------------------------------------------------------- gate weights


def test_gate_weights_match_a_hand_computed_softmax_of_cosines():
    centroids = np.array([[2.0, 0.0], [0.0, 3.0], [-1.0, 1.0]])
    weights = gate_weights(np.array([5.0, 0.0]), centroids, tau=0.1)
    cosines = np.array([1.0, 0.0, -1 / math.sqrt(2)])
    expected = np.exp(cosines / 0.1) / np.exp(cosines / 0.1).sum()
    assert weights.shape == (3,)
    assert weights == pytest.approx(expected)


def test_gate_weights_rows_sum_to_one_and_smaller_tau_is_sharper():
    rng = np.random.default_rng(3)
    vectors, centroids = rng.normal(size=(20, 4)), rng.normal(size=(3, 4))
    sharp, soft = gate_weights(vectors, centroids, 0.05), gate_weights(vectors, centroids, 0.5)
    assert sharp.shape == (20, 3)
    assert sharp.sum(axis=1) == pytest.approx(np.ones(20)) and soft.sum(axis=1) == pytest.approx(np.ones(20))
    assert (sharp.max(axis=1) >= soft.max(axis=1)).all()
    assert np.isfinite(gate_weights(vectors, centroids, 1e-6)).all()


def test_zero_vector_gets_uniform_weights():
    weights = gate_weights(np.zeros(3), np.eye(3), tau=0.1)
    assert weights == pytest.approx(np.full(3, 1 / 3))


# ---------------------------------------------------------------- routing

DEFAULT = GateSettings()


def _at_threshold(k: int, slot: int) -> list[float]:
    """The largest weight exactly at the single-expert threshold, the rest shared evenly."""
    top = DEFAULT.single_threshold(k)
    return [top if e == slot else (1 - top) / (k - 1) for e in range(k)]


@pytest.mark.parametrize("weights, decision, expert", [
    ([0.9, 0.1], "single", 0),
    ([0.1, 0.9], "single", 1),
    (_at_threshold(2, 0), "fused", None),  # exactly 0.8: not single (strict >); entropy 0.722 of the maximum
    ([0.55, 0.45], "global", None),  # entropy 0.993 of the maximum
    ([0.7, 0.3], "fused", None),  # entropy 0.881 of the maximum
    ([0.75, 0.15, 0.10], "single", 0),
    (_at_threshold(3, 2), "fused", None),  # exactly 0.7; entropy 0.745 of the maximum
    ([0.34, 0.33, 0.33], "global", None),
    ([0.5, 0.3, 0.2], "fused", None),  # entropy 0.937 of the maximum, just under 0.95
    ([0.45, 0.3, 0.25], "global", None),  # entropy 0.971 of the maximum
    ([0.1, 0.66, 0.12, 0.12], "single", 1),
    (_at_threshold(4, 3), "fused", None),  # exactly 0.65; entropy 0.744 of the maximum
    ([0.25, 0.25, 0.25, 0.25], "global", None),
    ([0.4, 0.4, 0.1, 0.1], "fused", None),  # entropy 0.861 of the maximum
])
def test_routing_table(weights, decision, expert):
    routing = route(np.array(weights), DEFAULT)
    assert (routing.decision, routing.expert) == (decision, expert)
    assert routing.weights == pytest.approx(weights)
    assert len(routing.mixture) == len(weights) + 1 and sum(routing.mixture) == pytest.approx(1.0)
    if decision == "single":
        assert routing.mixture == tuple(1.0 if e == expert + 1 else 0.0 for e in range(len(weights) + 1))
        assert f"Expert {expert + 1}" in routing.reason and "one expert" in routing.reason
    elif decision == "global":
        assert routing.mixture == (1.0,) + (0.0,) * len(weights)
        assert "global model" in routing.reason
    else:
        assert routing.mixture == pytest.approx((0.0, *weights))
        assert "blends experts" in routing.reason


def test_entropy_rule_is_inclusive():
    weights = np.array([0.5, 0.3, 0.2])
    ratio = route(weights).entropy / math.log(3)
    assert route(weights, GateSettings(entropy_ratio=ratio - 1e-9)).decision == "global"
    assert route(weights, GateSettings(entropy_ratio=ratio + 1e-9)).decision == "fused"


def test_single_rule_is_checked_before_the_global_rule():
    both = GateSettings(single_margin=0.0, entropy_ratio=0.0)  # 0.6 > 0.5 and any entropy >= 0
    assert route(np.array([0.6, 0.4]), both).decision == "single"


def test_one_cluster_routes_to_the_global_adapter():
    routing = route(np.array([1.0]))
    assert (routing.decision, routing.expert, routing.mixture) == ("global", None, (1.0, 0.0))
    assert "only one user cluster" in routing.reason


def test_single_reason_quotes_share_and_threshold():
    assert route(np.array([0.83, 0.17])).reason == (
        "Expert 1 takes 83% of the weight, above the 80% needed to hand the case to one expert.")
    assert "80.04%" in route(np.array([0.8004, 0.1996])).reason


@pytest.mark.parametrize("weights", [[0.5, 0.6], [-0.1, 1.1], [[0.5, 0.5]], [], [math.nan, 1.0]])
def test_route_rejects_invalid_weights(weights):
    with pytest.raises(ValueError, match="gate weights"):
        route(np.array(weights))


@pytest.mark.parametrize("changes, name", [
    ({"tau": 0.0}, "tau"), ({"tau": -1.0}, "tau"), ({"tau": math.nan}, "tau"), ({"tau": "0.1"}, "tau"),
    ({"single_margin": -0.1}, "single_margin"), ({"entropy_ratio": 1.5}, "entropy_ratio"),
])
def test_gate_settings_are_validated(changes, name):
    with pytest.raises(ValueError, match=name):
        GateSettings(**changes)


# ---------------------------------------------------------------- the Gate


def test_gate_standardises_raw_vectors(blobs, blob_clustering):
    points, truth = blobs
    gate = Gate(blob_clustering)
    for blob in range(3):
        centre = points[truth == blob].mean(axis=0)
        routing = gate.route_user(centre)
        assert routing.decision == "single"
        assert routing.expert == np.bincount(blob_clustering.labels[truth == blob]).argmax()
    assert gate.route_user(blob_clustering.standardiser.mean).decision == "global"  # standardises to zero
    routings = gate.route_users(points[:5])
    assert len(routings) == 5 and all(r.decision in ("single", "fused", "global") for r in routings)
    with pytest.raises(ValueError):
        gate.route_user(points[:2])


def test_with_tau_returns_a_new_gate(blob_clustering):
    gate = Gate(blob_clustering)
    softer = gate.with_tau(2.0)
    assert gate.settings.tau == 0.1 and softer.settings.tau == 2.0
    assert softer.clustering is gate.clustering and softer.settings.entropy_ratio == gate.settings.entropy_ratio
    vector = blob_clustering.standardiser.mean + 0.5 * blob_clustering.standardiser.std
    assert softer.weights(vector).max() < gate.weights(vector).max()
    with pytest.raises(ValueError, match="tau"):
        gate.with_tau(0.0)


# ---------------------------------------------------------------- the user map


def _toy_map() -> UserMap:
    """A map whose coordinates are simply the first two embedding dimensions."""
    rng = np.random.default_rng(5)
    embeddings = np.concatenate([rng.normal(-4, 1, size=(30, 3)), rng.normal(4, 1, size=(30, 3))])
    labels = np.repeat([0, 1], 30)
    return UserMap(coords=embeddings[:, :2].copy(), labels=labels, centroid_coords=np.array([[-4.0, -4], [4, 4]]),
                   embeddings=embeddings, n_neighbors=15, min_dist=0.1, seed=0, fit_seconds=0.0)


def test_place_puts_a_training_user_on_its_own_point():
    user_map = _toy_map()
    for user in (0, 17, 45):
        assert user_map.place(user_map.embeddings[user]) == tuple(user_map.coords[user])


def test_place_weights_neighbours_like_umap():
    user_map = _toy_map()
    x, y = user_map.place(np.array([4.2, 3.9, 4.1]))
    assert 2.0 < x < 6.0 and 2.0 < y < 6.0
    with pytest.raises(ValueError, match="dimension 3"):
        user_map.place(np.zeros(2))


def test_fitted_map_places_users_between_clusters(tmp_path):
    rng = np.random.default_rng(7)
    half = rng.normal(size=(30, 4)) + np.array([6.0, 0, 0, 0])
    embeddings = np.concatenate([half, -half])  # mirrored blobs: the origin is equally far from both
    labels = np.repeat([0, 1], 30)
    centroids = np.stack([half.mean(axis=0), -half.mean(axis=0)])
    user_map = fit_user_map(embeddings, labels, centroids, seed=0, n_neighbors=10)
    assert user_map.coords.shape == (60, 2) and user_map.centroid_coords.shape == (2, 2)
    assert user_map.fit_seconds > 0
    assert user_map.place(embeddings[3]) == tuple(user_map.coords[3])
    a, b = user_map.coords[:30].mean(axis=0), user_map.coords[30:].mean(axis=0)
    t = np.dot(np.array(user_map.place(np.zeros(4))) - a, b - a) / np.dot(b - a, b - a)
    assert 0.2 < t < 0.8
    save_user_map(user_map, tmp_path)
    loaded = load_user_map(tmp_path)
    np.testing.assert_array_equal(loaded.coords, user_map.coords)
    np.testing.assert_array_equal(loaded.labels, labels)
    np.testing.assert_array_equal(loaded.embeddings, user_map.embeddings)
    np.testing.assert_array_equal(loaded.centroid_coords, user_map.centroid_coords)
    assert (loaded.n_neighbors, loaded.min_dist, loaded.seed, loaded.fit_seconds) == (10, 0.1, 0, user_map.fit_seconds)


@pytest.mark.parametrize("damage, culprit", [
    (lambda f: (f / "user_map.json").unlink(), "user_map.json"),
    (lambda f: (f / "user_map.json").write_text("[", encoding="utf-8"), "user_map.json"),
    (lambda f: (f / "user_map.parquet").unlink(), "user_map.parquet"),
    (lambda f: (f / "user_map.parquet").write_bytes(b"not parquet"), "user_map.parquet"),
    (lambda f: (f / "user_map.safetensors").unlink(), "user_map.safetensors"),
    (lambda f: (f / "user_map.safetensors").write_bytes(b"garbage"), "user_map.safetensors"),
])
def test_damaged_user_map_names_the_file(tmp_path, damage, culprit):
    save_user_map(_toy_map(), tmp_path)
    assert load_user_map(tmp_path).place(np.zeros(3)) == _toy_map().place(np.zeros(3))
    damage(tmp_path)
    with pytest.raises(CheckpointError, match=culprit):
        load_user_map(tmp_path)


def test_user_map_shapes_are_checked(tmp_path):
    from safetensors.numpy import save_file

    save_user_map(_toy_map(), tmp_path)
    save_file({"embeddings": np.zeros((59, 3)), "centroid_coords": np.zeros((2, 2))}, tmp_path / "user_map.safetensors")
    with pytest.raises(CheckpointError, match="user_map.safetensors"):
        load_user_map(tmp_path)


# ---------------------------------------------------------------- the real encoder


@pytest.mark.integration
def test_real_lightgcn_users_cluster():
    from thinkrec.cf.store import cf_dir, load_embeddings
    from thinkrec.config import load_config

    config = load_config()
    if not (cf_dir(config) / "lightgcn" / "embeddings.safetensors").exists():
        pytest.skip("checkpoints/cf/lightgcn is absent; run `python -m thinkrec train-cf`")
    users = load_embeddings(config, "lightgcn")["user"].numpy()
    clustering = cluster_users(users, 3, "kmeans", seed=config.cf.seed, encoder="lightgcn")
    assert sum(clustering.sizes) == len(users) == 943
    assert math.isfinite(clustering.silhouette)

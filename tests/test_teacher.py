"""The teacher: evidence from the past only, grounded traces, the trace dataset."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from thinkrec.data.atomic import DataFileError
from thinkrec.teacher.dataset import (
    COLUMNS,
    build_trace_dataset,
    load_trace_dataset,
    save_trace_dataset,
    select_rows,
    system1_train_scores,
)
from thinkrec.teacher.evidence import DISLIKE, LIKE, Evidence, EvidenceBuilder, Link, gather_evidence
from thinkrec.teacher.grounded import GroundedTeacher, check_trace, cited_titles


@pytest.fixture
def embeddings(tiny_prepared) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(tiny_prepared.n_items, 8))


@pytest.fixture
def evidence_rows(tiny_prepared, embeddings) -> list[tuple]:
    """(row, evidence) for every row of the tiny dataset."""
    builder = EvidenceBuilder(tiny_prepared, embeddings)
    return [(row, builder.gather(row)) for _, row in tiny_prepared.rows.iterrows()]


def without_quotes(text: str) -> str:
    return re.sub(r'"[^"]*"', '""', text)


def sentences(trace: str) -> list[str]:
    """The sentences after the verdict, with quoted titles blanked (titles may hold full stops)."""
    body = without_quotes(trace.split(". ", 1)[1])
    return [s for s in re.split(r"(?<=[.!?])\s+", body) if s]


# --- evidence ---------------------------------------------------------------------------------------------

def test_evidence_uses_only_earlier_interactions_and_never_the_target(tiny_prepared, evidence_rows):
    rows = tiny_prepared.rows
    for row, evidence in evidence_rows:
        mine = rows[rows["user"] == row["user"]]
        earlier = set(mine.loc[mine["timestamp"] < row["timestamp"], "item"])
        history = {h.item for h in evidence.history}
        assert history <= earlier
        assert row["item"] not in history
        assert {s.item for s in evidence.similar} <= history
        assert {link.item for link in evidence.links} <= history
        expected = {int(i) for i in row["hist_items"] if i >= 0} - {row["item"]}
        assert history == expected


def test_history_labels_come_from_the_row(evidence_rows):
    for row, evidence in evidence_rows:
        latest = {int(i): bool(liked) for i, liked in zip(row["hist_items"], row["hist_labels"]) if i >= 0}
        assert all(h.liked == latest[h.item] for h in evidence.history)
        assert set(evidence.liked_titles) | set(evidence.disliked_titles) == {h.title for h in evidence.history}


def test_similar_items_are_the_closest_by_cosine(tiny_prepared, embeddings, evidence_rows):
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    for row, evidence in evidence_rows:
        if not evidence.has_history:
            continue
        history = [h.item for h in evidence.history]
        cosines = unit[history] @ unit[row["item"]]
        best = [history[i] for i in np.argsort(-cosines, kind="stable")[:3]]
        assert [s.item for s in evidence.similar] == best
        assert all(a.similarity >= b.similarity for a, b in zip(evidence.similar, evidence.similar[1:]))


def test_support_agrees_with_the_label_and_counter_does_not(evidence_rows):
    for row, evidence in evidence_rows:
        agree = LIKE if row["label"] == 1 else DISLIKE
        assert all(s.points_to == agree for s in evidence.support)
        assert all(s.points_to != agree for s in evidence.counter)
        assert evidence.arguments(1 - evidence.label) == (evidence.counter, evidence.support)
        assert all(set(s.titles) <= evidence.allowed_titles for s in evidence.support + evidence.counter)


def test_genre_overlap_and_audience_keywords(tiny_prepared, embeddings):
    rows = tiny_prepared.rows
    row = rows[(rows["user"] == 0) & (rows["item"] == 3) & (rows["split"] == "valid")].iloc[0]
    evidence = gather_evidence(tiny_prepared, row, embeddings)
    # Quiet Sea (Drama, Romance) after Old Reel (Comedy Drama), Alpha (liked), Alpha Returns, The Garden (Drama)
    assert evidence.title == "Quiet Sea"
    assert evidence.overlap_liked == () and evidence.overlap_disliked == ("Drama",)
    genre = next(s for s in evidence.counter if s.kind == "genre")  # the user liked Quiet Sea
    assert genre.titles == ("The Garden", "Old Reel") and genre.genres == ("Drama",)
    assert set(evidence.audience) == {"crowd favourite", "acclaimed"}
    assert evidence.era == "mid nineties film"  # 1995 (years ending 4-6: mid decade)


def test_knowledge_graph_link_to_a_history_item(tiny_prepared, embeddings):
    rows = tiny_prepared.rows
    row = rows[(rows["user"] == 0) & (rows["item"] == 1) & (rows["timestamp"] == 880001420)].iloc[0]
    evidence = gather_evidence(tiny_prepared, row, embeddings)  # "Alpha Returns" after the liked "Alpha"
    assert evidence.links == (Link("is a sequel to", 0, "Alpha", True),)
    assert any(s.kind == "link" and s.titles == ("Alpha",) for s in evidence.support + evidence.counter)


def test_evidence_round_trips_through_json(evidence_rows):
    for _, evidence in evidence_rows:
        assert Evidence.from_dict(json.loads(json.dumps(evidence.to_dict()))) == evidence


def test_empty_history_gives_profile_only_evidence_and_a_sensible_trace(evidence_rows):
    empty = [(row, e) for row, e in evidence_rows if (row["hist_items"] < 0).all()]
    assert empty
    for row, evidence in empty:
        assert not evidence.has_history and evidence.similar == () and evidence.links == ()
        assert evidence.allowed_titles == {evidence.title}
        trace = GroundedTeacher(0).explain(evidence, row["label"])
        assert trace.startswith("Yes." if row["label"] else "No.")
        assert "profile" in trace
        assert cited_titles(trace) and set(cited_titles(trace)) == {evidence.title}
        assert 3 <= len(sentences(trace)) <= 5


# --- grounded traces --------------------------------------------------------------------------------------

@pytest.mark.parametrize("flip", [False, True])
def test_traces_start_with_the_verdict_and_cite_only_evidence_titles(evidence_rows, flip):
    teacher = GroundedTeacher(seed=3)
    for _, evidence in evidence_rows:
        label = 1 - evidence.label if flip else evidence.label
        trace = teacher.explain(evidence, label)
        assert trace.startswith("Yes. " if label else "No. ")
        assert set(cited_titles(trace)) <= {h.title for h in evidence.history} | {evidence.title}
        assert check_trace(trace, label, evidence.allowed_titles) is None
        assert 3 <= len(sentences(trace)) <= 5
        unquoted = without_quotes(trace).lower()
        assert not re.search(r"\d|\brat(ing|ed)\b|\bstars?\b|\blabel", unquoted)
        assert ("Although" in trace) == bool(evidence.arguments(label)[1])


def test_traces_are_deterministic_for_a_seed(evidence_rows):
    first = [GroundedTeacher(7).explain(e, e.label) for _, e in evidence_rows]
    again = [GroundedTeacher(7).explain(e, e.label) for _, e in evidence_rows]
    other = [GroundedTeacher(8).explain(e, e.label) for _, e in evidence_rows]
    assert first == again
    assert first != other


def test_phrasing_varies_across_rows(evidence_rows):
    openings = set()
    for _, evidence in evidence_rows:
        trace = GroundedTeacher(0).explain(evidence, evidence.label)
        openings.add(without_quotes(sentences(trace)[0]))
    assert len(openings) >= 3


def test_check_trace_rejects_wrong_verdicts_and_unknown_titles():
    allowed = {"Alpha", "Quiet Sea"}
    assert check_trace('Yes. It is close to "Alpha".', 1, allowed) is None
    assert "start" in check_trace('No. It is close to "Alpha".', 1, allowed)
    assert "Titanic" in check_trace('Yes. It is close to \u201cTitanic\u201d.', 1, allowed)
    assert "reasoning" in check_trace("Yes.", 1, allowed)


# --- the trace dataset ------------------------------------------------------------------------------------

def wrong_on_first(prepared, n_wrong: int) -> np.ndarray:
    """Scores that are right on every train row except the first ``n_wrong``; 0.5 counts as "No"."""
    labels = prepared.split("train")["label"].to_numpy()
    scores = np.where(labels == 1, 0.9, 0.5)
    scores[:n_wrong] = np.where(labels[:n_wrong] == 1, 0.5, 0.6)
    return scores


def test_select_rows_takes_every_error_a_share_of_the_rest_and_test_references(tiny_prepared):
    train = tiny_prepared.split("train")
    rows = select_rows(tiny_prepared, wrong_on_first(tiny_prepared, 5), 0.5, 3, seed=1)
    errors = rows[rows["purpose"] == "train_error"]
    extra = rows[rows["purpose"] == "train_random"]
    reference = rows[rows["purpose"] == "reference"]
    key = ["user", "item", "timestamp"]
    assert errors[key].values.tolist() == train[key].head(5).values.tolist()
    assert len(extra) == round(0.5 * (len(train) - 5))
    assert not set(map(tuple, extra[key].values)) & set(map(tuple, errors[key].values))
    assert len(reference) == 3 and (reference["split"] == "test").all()
    assert (errors["split"] == "train").all() and (extra["split"] == "train").all()
    again = select_rows(tiny_prepared, wrong_on_first(tiny_prepared, 9), 0.0, 3, seed=1)
    assert again[again["purpose"] == "reference"][key].values.tolist() == reference[key].values.tolist()  # seed alone
    assert (again["purpose"] == "train_error").sum() == 9 and (again["purpose"] == "train_random").sum() == 0
    everything = select_rows(tiny_prepared, wrong_on_first(tiny_prepared, 0), 1.0, 100, seed=1)
    assert (everything["purpose"] == "train_random").sum() == len(train)
    assert (everything["purpose"] == "reference").sum() == len(tiny_prepared.split("test"))


def test_select_rows_rejects_bad_arguments(tiny_prepared):
    scores = wrong_on_first(tiny_prepared, 0)
    with pytest.raises(ValueError, match="random_share"):
        select_rows(tiny_prepared, scores, 1.5, 1, seed=0)
    with pytest.raises(ValueError, match="train scores"):
        select_rows(tiny_prepared, scores[:-1], 0.5, 1, seed=0)


def test_build_save_and_load_the_trace_dataset(tiny_prepared, tiny_config, embeddings, tmp_path):
    frame = build_trace_dataset(tiny_prepared, tiny_config, GroundedTeacher(0), wrong_on_first(tiny_prepared, 4),
                                random_share=0.25, reference_size=2, seed=0, item_embeddings=embeddings)
    assert list(frame.columns) == COLUMNS
    assert frame["purpose"].value_counts().to_dict() == {"train_error": 4, "train_random": 7, "reference": 2}
    assert (frame["teacher"] == "grounded").all()
    for row in frame.itertuples():
        evidence = Evidence.from_dict(json.loads(row.evidence))
        assert (evidence.user, evidence.item, evidence.label) == (row.user, row.item, row.label)
        assert check_trace(row.trace, row.label, evidence.allowed_titles) is None
    save_trace_dataset(frame, tmp_path / "traces" / "traces.parquet")
    loaded = load_trace_dataset(tmp_path / "traces" / "traces.parquet")
    assert loaded.equals(frame.reset_index(drop=True))
    with pytest.raises(DataFileError, match="missing.parquet"):
        load_trace_dataset(tmp_path / "missing.parquet")


# --- real data --------------------------------------------------------------------------------------------

@pytest.mark.integration
def test_real_movielens_traces_cite_only_evidence_titles():
    from thinkrec.cf.store import cf_dir, load_embeddings
    from thinkrec.config import load_config
    from thinkrec.data.prepared import prepare_dataset

    config = load_config()
    if not (cf_dir(config) / "mf" / "config.json").exists():
        pytest.skip("checkpoints/cf/mf is absent: run `python -m thinkrec train-cf` first")
    prepared = prepare_dataset(config)
    scores = system1_train_scores(prepared, config, "mf")
    train = prepared.split("train")
    assert scores.shape == (len(train),)
    assert 0.1 < np.mean((scores > 0.5) != train["label"].to_numpy()) < 0.45  # a trained model, not a coin
    rows = select_rows(prepared, scores, random_share=0.0, reference_size=10, seed=0)
    sample = rows.groupby("purpose", group_keys=False).head(40).head(50)
    builder = EvidenceBuilder(prepared, load_embeddings(config, "mf")["item"])
    teacher = GroundedTeacher(0)
    for _, row in sample.iterrows():
        evidence = builder.gather(row)
        trace = teacher.explain(evidence, row["label"])
        assert check_trace(trace, row["label"], evidence.allowed_titles) is None, trace
        assert set(cited_titles(trace)) <= {h.title for h in evidence.history} | {evidence.title}
        assert 3 <= len(sentences(trace)) <= 5

"""Item keywords from genres, era, audience signals and the knowledge graph; user profiles."""

from __future__ import annotations

import pandas as pd

from thinkrec.data.keywords import audit_kg, era_keyword


def keywords_of(prepared, title):
    items = prepared.items
    return items.loc[items["title"] == title, "keywords"].iloc[0]


def test_genres_era_and_graph_facts(tiny_prepared):
    alpha = keywords_of(tiny_prepared, "Alpha")
    assert alpha[:3] == ["action", "sci-fi", "eighties film"]
    assert "followed by Alpha Returns" in alpha
    assert "sequel to Alpha" in keywords_of(tiny_prepared, "Alpha Returns")
    assert "same director as Quiet Sea" in keywords_of(tiny_prepared, "The Garden")
    assert "award-winning" in keywords_of(tiny_prepared, "Laugh Track")
    old = keywords_of(tiny_prepared, "Old Reel")
    assert "award-nominated" in old and "golden-age classic" in old


def test_keywords_are_capped_and_unique(tiny_config):
    from thinkrec.data.prepared import prepare_dataset

    tiny_config.data.max_keywords = 2
    prepared = prepare_dataset(tiny_config)
    assert all(len(k) <= 2 and len(set(k)) == len(k) for k in prepared.items["keywords"])


def test_graph_can_be_switched_off(tiny_config):
    from thinkrec.data.prepared import prepare_dataset

    tiny_config.data.kg_keywords = "never"
    prepared = prepare_dataset(tiny_config)
    assert not any("sequel" in w or "award" in w for k in prepared.items["keywords"] for w in k)
    assert prepared.summary["knowledge_graph"]["used"] is False


def test_audit_rejects_misaligned_links():
    titles = [f"Film {name}" for name in ("Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot")] * 3
    pairs = [(i, (i + 7) % len(titles)) for i in range(12)]  # sequels with unrelated titles
    kg = pd.DataFrame({"item": [a for a, _ in pairs], "relation": "film.film.sequel", "tail": "x",
                       "tail_item": [b for _, b in pairs]})
    report = audit_kg(kg, [t.split()[1] for t in titles])
    assert report["trusted"] is False and report["sequel_title_overlap"] == 0.0


def test_audit_accepts_sequels_sharing_titles():
    titles = [f"Saga{i}" for i in range(12)] + [f"Saga{i} Returns" for i in range(12)]
    kg = pd.DataFrame({"item": range(12), "relation": "film.film.sequel", "tail": "x", "tail_item": range(12, 24)})
    assert audit_kg(kg, titles)["trusted"] is True


def test_era_words_hold_no_numbers():
    assert era_keyword(1994, "halves") == "early nineties film" and era_keyword(1998) == "late nineties film"
    assert era_keyword(None) is None


def test_profiles_come_from_train_only(tiny_prepared):
    train = tiny_prepared.split("train")
    users = tiny_prepared.users
    assert users["n_train"].tolist() == train.groupby("user").size().tolist()
    assert users["like_rate"].iloc[0] == round(train[train.user == 0]["label"].mean(), 4)
    assert set(users["activity"]) <= {"light", "regular", "heavy"}
    assert users.loc[0, "occupation"] == "technician"

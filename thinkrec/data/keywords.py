"""Up to ten keywords per item, built only from what the dataset holds.

ML-100K has no descriptions, so the keywords come from genres, the era, knowledge-graph facts
(award-winning, sequel/prequel, the same director, writer or cast as a named catalogue item) and
audience signals (popularity and like-rate tiers, computed on the train split only).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import numpy as np
import pandas as pd

KG_PEOPLE = (  # relation, keyword prefix; the tail is a person shared with other catalogue items
    ("film.film.directed_by", "same director as"),
    ("film.film.written_by", "same writer as"),
)
KG_CAST = "film.film.actor"
MIN_SHARED_CAST = 3  # actors two films must share before one names the other


def audit_kg(kg: pd.DataFrame | None, titles: list[str], seed: int = 0) -> dict:
    """Check that the item-to-entity links are plausible before trusting the graph.

    Sequels almost always share a title word with their prequel ("Die Hard", "Die Hard 2").
    If linked sequel pairs share title words no more often than random pairs, the links are
    misaligned and every fact read through them would be false.
    """
    def words(title: str) -> set[str]:
        return {w for w in re.findall(r"[a-z]+", title.lower()) if len(w) > 3}

    def overlap(pairs) -> float:
        pairs = list(pairs)
        return float(np.mean([bool(words(titles[a]) & words(titles[b])) for a, b in pairs])) if pairs else 0.0

    if kg is None or kg.empty:
        return {"present": False, "trusted": False}
    sequels = kg[kg["relation"].isin(["film.film.sequel", "film.film.prequel"]) & (kg["tail_item"] >= 0)]
    rng = np.random.default_rng(seed)
    random_pairs = zip(rng.integers(0, len(titles), 2000), rng.integers(0, len(titles), 2000))
    report = {"present": True, "sequel_pairs": int(len(sequels)),
              "sequel_title_overlap": round(overlap(zip(sequels["item"], sequels["tail_item"])), 4),
              "random_title_overlap": round(overlap(random_pairs), 4)}
    report["trusted"] = bool(len(sequels) < 10 or report["sequel_title_overlap"] >= 0.3)
    return report


ERA_RULES = ("halves", "thirds")  # "halves": the shipped checkpoints' rule; "thirds": early / mid / late
STORED_ERA_RULE = "halves"  # the rule of the era keyword stored with the prepared items (what shipped prompts show)
DECADES = {1960: "sixties", 1970: "seventies", 1980: "eighties", 1990: "nineties"}
THIRDS = ((3, "early"), (6, "mid"), (9, "late"))  # last digit of the year up to which each third runs


def era_keyword(year: int | None, rule: str = "thirds") -> str | None:
    """A worded era (the paper's keywords hold no numbers): the one owner of the era rule.

    "thirds" (the default) splits every decade from the sixties on into early (years ending 0-3), mid (4-6)
    and late (7-9); "halves" is the rule the shipped checkpoints were trained with (whole decades, and the
    nineties cut at 1995, so 1995 reads "late nineties")."""
    if rule not in ERA_RULES:
        raise ValueError(f"unknown era rule {rule!r}; choose from {', '.join(ERA_RULES)}")
    if year is None or pd.isna(year):
        return None
    year = int(year)
    if year < 1960:
        return "golden-age classic"
    if rule == "halves":
        decade = {1960: "sixties", 1970: "seventies", 1980: "eighties"}.get(year // 10 * 10)
        if decade:
            return f"{decade} film"
        return "early nineties film" if year < 1995 else "late nineties film"
    decade = DECADES.get(year // 10 * 10)
    if decade is None:
        return None
    third = next(word for last, word in THIRDS if year % 10 <= last)
    return f"{third} {decade} film"


ERA_WORDS = frozenset(era_keyword(year, rule) for rule in ERA_RULES for year in (1950, *range(1960, 2000)))


def restate_era(keywords: list[str], year: int | None, rule: str) -> list[str]:
    """``keywords`` (built under any era rule) with the era keyword worded by ``rule`` instead."""
    era = era_keyword(year, rule)
    return [era if word in ERA_WORDS else word for word in keywords if word not in ERA_WORDS or era]


def item_keywords(items: pd.DataFrame, rule: str) -> list[list[str]]:
    """The prepared items' keywords with their eras worded by ``rule`` (what prompts and the teacher read)."""
    return [restate_era(list(words), year, rule) for words, year in zip(items["keywords"], items["year"])]


def audience_keywords(train: pd.DataFrame, n_items: int, min_support: int) -> list[list[str]]:
    """Popularity tier (train interaction count quartiles) and like-rate tier per item."""
    counts = np.bincount(train["item"], minlength=n_items)
    likes = np.bincount(train["item"], weights=train["label"], minlength=n_items)
    seen = counts[counts > 0]
    high, low = (np.quantile(seen, [0.9, 0.5]) if len(seen) else (np.inf, 0))
    mean_rate = likes.sum() / max(counts.sum(), 1)
    words: list[list[str]] = []
    for count, liked in zip(counts, likes):
        item_words = []
        if count >= high:
            item_words.append("crowd favourite")
        elif count < low:
            item_words.append("little-known")
        if count >= min_support:
            rate = liked / count
            if rate >= mean_rate + 0.2:
                item_words.append("acclaimed")
            elif rate <= mean_rate - 0.2:
                item_words.append("poorly received")
        words.append(item_words)
    return words


def kg_keywords(kg: pd.DataFrame | None, titles: list[str], popularity: np.ndarray) -> list[list[str]]:
    """Award, sequel/prequel and shared-crew keywords naming the most popular related item."""
    words: list[list[str]] = [[] for _ in titles]
    if kg is None or kg.empty:
        return words
    relations = kg.groupby("relation")

    def items_with(relation: str) -> set[int]:
        return set(relations.get_group(relation)["item"]) if relation in relations.groups else set()

    won, nominated = items_with("film.film.award_won"), items_with("film.film.award_nomination")
    for item in range(len(titles)):
        if item in won:
            words[item].append("award-winning")
        elif item in nominated:
            words[item].append("award-nominated")
    for relation, phrase in (("film.film.prequel", "sequel to"), ("film.film.sequel", "followed by")):
        if relation in relations.groups:
            for item, other in relations.get_group(relation)[["item", "tail_item"]].itertuples(index=False):
                if other >= 0 and other != item and not any(w.startswith(phrase) for w in words[item]):
                    words[item].append(f"{phrase} {titles[other]}")
    for relation, phrase in KG_PEOPLE:
        if relation in relations.groups:
            _shared_keyword(relations.get_group(relation), phrase, 1, titles, popularity, words)
    if KG_CAST in relations.groups:
        _shared_keyword(relations.get_group(KG_CAST), "shares cast with", MIN_SHARED_CAST, titles, popularity, words)
    return words


def _shared_keyword(triples: pd.DataFrame, phrase: str, min_shared: int, titles: list[str],
                    popularity: np.ndarray, words: list[list[str]]) -> None:
    """For each item, name the most popular other item sharing at least ``min_shared`` people."""
    items_of_person: dict[str, set[int]] = defaultdict(set)
    for item, person in triples[["item", "tail"]].itertuples(index=False):
        items_of_person[person].add(item)
    shared: dict[int, Counter] = defaultdict(Counter)
    for items in items_of_person.values():
        if 1 < len(items) <= 50:  # a person in hundreds of films says little about any one
            for item in items:
                shared[item].update(other for other in items if other != item)
    for item, counter in shared.items():
        candidates = [other for other, n in counter.items() if n >= min_shared]
        if candidates:
            best = max(candidates, key=lambda other: (counter[other], popularity[other], -other))
            words[item].append(f"{phrase} {titles[best]}")


def build_keywords(items: pd.DataFrame, train: pd.DataFrame, kg: pd.DataFrame | None,
                   max_keywords: int, min_support: int) -> list[list[str]]:
    """Keywords per item, in priority order: genres, era, audience, knowledge graph."""
    titles = items["title"].tolist()
    popularity = np.bincount(train["item"], minlength=len(items))
    graph = kg_keywords(kg, titles, popularity)
    audience = audience_keywords(train, len(items), min_support)
    result = []
    for item, genres in enumerate(items["genres"]):
        era = era_keyword(items["year"].iloc[item], STORED_ERA_RULE)
        words = [g.lower() for g in genres] + ([era] if era else []) + audience[item] + graph[item]
        unique = list(dict.fromkeys(w for w in words if w))
        result.append(unique[:max_keywords])
    return result

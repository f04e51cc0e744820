"""The evidence a teacher may cite when it explains why a user liked or disliked a film.

Everything comes from the row's own history (the interactions strictly before the target, as
``prepared.rows`` stores them, cut to the part the prompt shows) and train-only statistics (the
user's profile, the item's keywords). Nothing is read from the future, and the only titles in
the evidence are the target's and those of the shown history.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any

from thinkrec.cf.neighbours import CLOSE_MIN, comparable_history, nearest, unit_rows
from thinkrec.data.keywords import era_keyword, item_keywords
from thinkrec.data.prepared import PreparedData
from thinkrec.data.profiles import RATE_MIN_TRAIN

LIKE, DISLIKE = "like", "dislike"
AUDIENCE = {  # audience keyword -> (direction, weight)
    "acclaimed": (LIKE, 0.7),
    "crowd favourite": (LIKE, 0.35),
    "poorly received": (DISLIKE, 0.7),
    "little-known": (DISLIKE, 0.25),
}
LINKS = {  # knowledge-graph keyword prefix -> how a sentence states the link
    "sequel to": "is a sequel to",
    "followed by": "was followed by",
    "same director as": "shares its director with",
    "same writer as": "shares its writer with",
    "shares cast with": "shares cast with",
}
WEIGHTS = {"link": 0.9, "profile_genre": 0.5, "history_rate": 0.4, "profile_rate": 0.3}
RATE_MIN_HISTORY = 3  # history items before "they liked most of their recent films" is said
IGNORED_GENRES = {"unknown"}


@dataclass(frozen=True)
class HistoryItem:
    """One earlier interaction of the user."""

    item: int
    title: str
    liked: bool
    genres: tuple[str, ...]


@dataclass(frozen=True)
class SimilarItem:
    """A history item close to the target in the CF item-embedding space."""

    item: int
    title: str
    similarity: float
    liked: bool


@dataclass(frozen=True)
class Link:
    """A knowledge-graph link from the target to a history item (sequel, same director ...)."""

    relation: str
    item: int
    title: str
    liked: bool


@dataclass(frozen=True)
class Signal:
    """One argument for a like or a dislike."""

    kind: str  # similar | genre | link | profile_genre | audience | history_rate | profile_rate
    points_to: str  # LIKE or DISLIKE
    weight: float  # how strongly it argues; orders the arguments
    titles: tuple[str, ...] = ()  # history titles it cites
    genres: tuple[str, ...] = ()
    detail: str = ""  # the audience keyword or the link's relation


@dataclass(frozen=True)
class Evidence:
    """Everything the teacher knows about one row; ``support`` agrees with ``label``, ``counter`` does not."""

    user: int
    item: int
    label: int
    title: str
    genres: tuple[str, ...]
    keywords: tuple[str, ...]
    era: str  # worded era ("late nineties film"), "" when the year is unknown
    audience: tuple[str, ...]  # audience keywords of the target
    history: tuple[HistoryItem, ...]  # oldest first, one entry per item, the target excluded
    profile_liked_genres: tuple[str, ...]
    profile_disliked_genres: tuple[str, ...]
    overlap_liked: tuple[str, ...]  # target genres shared with liked history items
    overlap_disliked: tuple[str, ...]  # target genres shared with disliked history items
    similar: tuple[SimilarItem, ...]  # most similar first
    links: tuple[Link, ...]
    support: tuple[Signal, ...]  # strongest first
    counter: tuple[Signal, ...]  # strongest first

    @property
    def has_history(self) -> bool:
        return bool(self.history)

    @property
    def liked_titles(self) -> tuple[str, ...]:
        return tuple(h.title for h in self.history if h.liked)

    @property
    def disliked_titles(self) -> tuple[str, ...]:
        return tuple(h.title for h in self.history if not h.liked)

    @property
    def allowed_titles(self) -> frozenset[str]:
        """The only titles a trace may cite: the target and the row's history."""
        return frozenset([self.title, *(h.title for h in self.history)])

    def arguments(self, label: int) -> tuple[tuple[Signal, ...], tuple[Signal, ...]]:
        """(support, counter) for ``label``, which may differ from the row's own label."""
        return (self.support, self.counter) if int(label) == self.label else (self.counter, self.support)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evidence:
        nested = {"history": HistoryItem, "similar": SimilarItem, "links": Link, "support": Signal,
                  "counter": Signal}
        values = {}
        for f in dataclasses.fields(cls):
            value = data[f.name]
            if f.name in nested:
                value = tuple(nested[f.name](**_tuples(entry)) for entry in value)
            values[f.name] = tuple(value) if isinstance(value, list) else value
        return cls(**values)


def _tuples(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()}


def parse_links(keywords: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(relation, linked title) for every knowledge-graph keyword such as "sequel to Alien"."""
    found = []
    for word in keywords:
        for prefix, relation in LINKS.items():
            if word.startswith(prefix + " "):
                found.append((relation, word[len(prefix) + 1:]))
    return tuple(found)


class EvidenceBuilder:
    """Precomputed item and user tables, so that gathering one row's evidence is cheap.

    ``history_len`` keeps the last interactions of a row's history, as the prompt shows them
    (``None``: all stored ones); ``era_rule`` words the eras as the prompt does (``data.keywords``)."""

    def __init__(self, prepared: PreparedData, item_embeddings: Any, history_len: int | None = None,
                 era_rule: str = "thirds"):
        items, users = prepared.items, prepared.users
        self.vectors = unit_rows(item_embeddings)
        if len(self.vectors) != len(items):
            raise ValueError(f"item embeddings have {len(self.vectors)} rows, the data has {len(items)} items")
        self.history_len = history_len
        self.titles = items["title"].tolist()
        self.genres = [tuple(g) for g in items["genres"]]
        self.keywords = [tuple(words) for words in item_keywords(items, era_rule)]
        self.eras = [era_keyword(year, era_rule) or "" for year in items["year"]]
        self.audience = [tuple(k for k in words if k in AUDIENCE) for words in self.keywords]
        self.links = [parse_links(words) for words in self.keywords]
        self.liked_genres = [tuple(g) for g in users["liked_genres"]]
        self.disliked_genres = [tuple(g) for g in users["disliked_genres"]]
        self.like_rate = users["like_rate"].to_numpy(dtype=float)
        self.n_train = users["n_train"].to_numpy()

    def gather(self, row: Any) -> Evidence:
        """Evidence for one row of ``prepared.rows`` (a Series or anything indexable by column)."""
        return self.build(row["user"], row["item"], row["label"], row["hist_items"], row["hist_labels"])

    def build(self, user: int, item: int, label: int, hist_items, hist_labels) -> Evidence:
        user, item, label = int(user), int(item), int(label)
        history = self.history(item, hist_items, hist_labels)
        target_genres = self.target_genres(item)
        liked_overlap, _ = genre_overlap(target_genres, history, liked=True)
        disliked_overlap, _ = genre_overlap(target_genres, history, liked=False)
        signals = self.signals(item, history, self.liked_genres[user], self.disliked_genres[user],
                               int(self.n_train[user]), float(self.like_rate[user]))
        agree = LIKE if label == 1 else DISLIKE
        return Evidence(
            user=user, item=item, label=label, title=self.titles[item], genres=self.genres[item],
            keywords=self.keywords[item], era=self.eras[item], audience=self.audience[item], history=history,
            profile_liked_genres=self.liked_genres[user], profile_disliked_genres=self.disliked_genres[user],
            overlap_liked=liked_overlap, overlap_disliked=disliked_overlap, similar=self.similar(item, history),
            links=self.linked(item, history),
            support=tuple(s for s in signals if s.points_to == agree),
            counter=tuple(s for s in signals if s.points_to != agree))

    def signals(self, item: int, history: tuple[HistoryItem, ...], liked_genres, disliked_genres,
                rated: int, like_rate: float) -> list[Signal]:
        """Every argument for either verdict, strongest first: from the shown history, the user's profile
        (favoured and avoided genres, how many films they rated and the share they liked) and the target's
        audience. Nothing here depends on the label, so the prompt can state them all."""
        target_genres = self.target_genres(item)
        signals = [
            *self.history_signals(item, history),
            *profile_genre_signals(tuple(g for g in target_genres if g in liked_genres),
                                   tuple(g for g in target_genres if g in disliked_genres)),
            *(Signal("audience", AUDIENCE[word][0], AUDIENCE[word][1], detail=word) for word in self.audience[item]),
            *history_rate_signals(history),
            *profile_rate_signals(rated, like_rate),
        ]
        return sorted(signals, key=lambda s: (-s.weight, s.kind))

    def target_genres(self, item: int) -> tuple[str, ...]:
        return tuple(g for g in self.genres[item] if g not in IGNORED_GENRES)

    def linked(self, item: int, history: tuple[HistoryItem, ...]) -> tuple[Link, ...]:
        """The history films a knowledge-graph keyword of the target names."""
        return tuple(Link(relation, h.item, h.title, h.liked)
                     for relation, title in self.links[item] for h in history if h.title == title)

    def history_signals(self, item: int, history: tuple[HistoryItem, ...]) -> list[Signal]:
        """The arguments that cite history films (close, sharing genres, linked): all the prompt can
        state as lines, since none of them depends on the user beyond the history shown."""
        target_genres = self.target_genres(item)
        liked_overlap, liked_examples = genre_overlap(target_genres, history, liked=True)
        disliked_overlap, disliked_examples = genre_overlap(target_genres, history, liked=False)
        signals = [
            *similar_signals(self.similar(item, history)),
            *genre_signals(liked_overlap, liked_examples, LIKE, history),
            *genre_signals(disliked_overlap, disliked_examples, DISLIKE, history),
            *(Signal("link", LIKE if link.liked else DISLIKE, WEIGHTS["link"], (link.title,), detail=link.relation)
              for link in self.linked(item, history)),
        ]
        return sorted(signals, key=lambda s: (-s.weight, s.kind))

    def history(self, item: int, hist_items, hist_labels) -> tuple[HistoryItem, ...]:
        """The row's shown history, oldest first, one entry per item (its latest label), without the target."""
        shown = [(int(i), int(label)) for i, label in zip(hist_items, hist_labels) if int(i) >= 0]
        if self.history_len is not None:
            shown = shown[-self.history_len:] if self.history_len > 0 else []
        latest = comparable_history(self.titles, item, [i for i, _ in shown], [label for _, label in shown])
        return tuple(HistoryItem(other, self.titles[other], liked, self.genres[other])
                     for other, liked in latest.items())

    def similar(self, item: int, history: tuple[HistoryItem, ...]) -> tuple[SimilarItem, ...]:
        """The history items closest to the target by cosine of CF item embeddings (``cf.neighbours``)."""
        liked = {h.item: h.liked for h in history}
        return tuple(SimilarItem(other, self.titles[other], similarity, liked[other])
                     for other, similarity in nearest(self.vectors, item, [h.item for h in history]))


def genre_overlap(target_genres: tuple[str, ...], history: tuple[HistoryItem, ...],
                  liked: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Target genres shared with the liked (or disliked) history items, most shared first,
    and those items' titles, newest first."""
    counts: Counter[str] = Counter()
    examples = []
    for entry in reversed(history):
        shared = [g for g in target_genres if g in entry.genres]
        if entry.liked == liked and shared:
            counts.update(shared)
            examples.append(entry.title)
    genres = sorted(counts, key=lambda g: (-counts[g], target_genres.index(g)))
    return tuple(genres), tuple(examples)


def similar_signals(similar: tuple[SimilarItem, ...]) -> list[Signal]:
    """One signal for the close items the user liked, one for those they disliked."""
    signals = []
    for liked, direction in ((True, LIKE), (False, DISLIKE)):
        close = [s for s in similar if s.liked == liked and s.similarity >= CLOSE_MIN]
        if close:
            signals.append(Signal("similar", direction, round(0.5 + 0.5 * close[0].similarity, 4),
                                  tuple(s.title for s in close[:2])))
    return signals


def genre_signals(genres: tuple[str, ...], examples: tuple[str, ...], direction: str,
                  history: tuple[HistoryItem, ...]) -> list[Signal]:
    """History items sharing the target's genres; more of them argue more strongly. The signal names the
    two genres shared most, the newest two films that have one of them, and of those genres only the
    ones these films have (each cited film shows a named genre, each named genre a cited film)."""
    if not genres:
        return []
    weight = round(0.4 + 0.05 * min(len(examples), 4), 4)
    return [genre_signal(direction, weight, examples, genres[:2], title_genres(history))]


def title_genres(history: tuple[HistoryItem, ...]) -> dict[str, set[str]]:
    """The genres of each history title (a title held by two items has both items' genres)."""
    genres: dict[str, set[str]] = {}
    for entry in history:
        genres.setdefault(entry.title, set()).update(entry.genres)
    return genres


def genre_signal(direction: str, weight: float, titles: tuple[str, ...], genres: tuple[str, ...],
                 genres_of: dict[str, set[str]]) -> Signal:
    """A genre argument citing at most two of ``titles`` that have one of ``genres``, naming only the
    genres those films have (no title or no genre when none is left)."""
    cited = tuple(t for t in titles if genres_of.get(t, set()) & set(genres))[:2]
    named = tuple(g for g in genres if any(g in genres_of[t] for t in cited))
    return Signal("genre", direction, weight, cited, named)


def profile_genre_signals(liked: tuple[str, ...], disliked: tuple[str, ...]) -> list[Signal]:
    """Target genres among the user's favourite or least favourite genres (train profile)."""
    signals = []
    if liked:
        signals.append(Signal("profile_genre", LIKE, WEIGHTS["profile_genre"], genres=liked[:1]))
    if disliked:
        signals.append(Signal("profile_genre", DISLIKE, WEIGHTS["profile_genre"], genres=disliked[:1]))
    return signals


def profile_rate_signals(rated: int, like_rate: float) -> list[Signal]:
    """The user's overall like-rate, once they have rated enough films to have one."""
    if rated < RATE_MIN_TRAIN:
        return []
    if like_rate >= 0.7:
        return [Signal("profile_rate", LIKE, WEIGHTS["profile_rate"])]
    if like_rate <= 0.3:
        return [Signal("profile_rate", DISLIKE, WEIGHTS["profile_rate"])]
    return []


def history_rate_signals(history: tuple[HistoryItem, ...]) -> list[Signal]:
    """Whether the user liked most, or few, of their recent films."""
    if len(history) < RATE_MIN_HISTORY:
        return []
    share = sum(h.liked for h in history) / len(history)
    if share >= 0.75:
        return [Signal("history_rate", LIKE, WEIGHTS["history_rate"])]
    if share <= 0.25:
        return [Signal("history_rate", DISLIKE, WEIGHTS["history_rate"])]
    return []


def gather_evidence(prepared: PreparedData, row: Any, item_embeddings: Any) -> Evidence:
    """Evidence for a single row; build one ``EvidenceBuilder`` instead when there are many."""
    return EvidenceBuilder(prepared, item_embeddings).gather(row)

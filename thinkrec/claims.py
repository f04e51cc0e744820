"""The claim checker: every checkable factual claim of an answer, judged against the data.

Claims are found by precise patterns only (what cannot be parsed reliably is not counted):

- ``year``: a film named with a year in brackets, ``"Cliffhanger" (1993)``;
- ``era`` and ``genre``: a description of a film, ``"X" is a late nineties comedy film``,
  ``Here the candidate is "X", a ...``, ``The film is not a drama``; a bare subject (the film,
  the movie, the target, it) means the target when the last film named before it was the target;
- ``reaction``: a history film the prompt shows with the reaction the text says the user had
  (``they did not enjoy "X"``, ``"X", which they liked``, ``Their recent misses include "X"``);
  a film outside the shown history is ``unchecked``; a reaction to the target itself is ``false``
  (``Although they did not enjoy "Toy Story" in the past``: they have not rated it), as the verdict
  is a prediction, not a past reaction;
- ``audience``: what viewers made of the target (acclaimed, well received, poorly received, crowd
  favourite, little-known), in a sentence that names or quotes no other film, against the train-only
  audience signal the keywords use;
- ``profile_genre``: the user's favoured or avoided genres, against their train profile (a guest's: their picks).

Films count as named by the one citation rule, ``text_metrics.title_mentions``. ``ClaimChecker.settled``
tells how much of an answer still streaming no continuation can change, so that marks shown while it
streams are the final ones.

Each claim also records whether it sits in the counter-argument (a sentence that opens with "Although")
and which way it argues, as the teacher weighs the same evidence: a reaction the text gives the user to a
film, what viewers made of the target (acclaimed, a crowd favourite: Yes; poorly received, little-known: No)
and the user's appetite for one of the target's genres. So ``text_metrics.argument_agreement`` can tell
whether each argument points the way its place in the answer calls for.

Eras split a decade into thirds: years ending 0-3 are early, 4-6 mid, 7-9 late; before 1960 a
film is a golden-age classic.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from thinkrec.config import Config
from thinkrec.data.keywords import THIRDS as ERA_THIRDS
from thinkrec.data.keywords import audience_keywords, era_keyword
from thinkrec.data.prepared import PreparedData
from thinkrec.data.profiles import genre_preferences
from thinkrec.data.split import PAD
from thinkrec.text_metrics import title_key, title_may_continue, title_mentions

TRUE, FALSE, UNCHECKED = "true", "false", "unchecked"
GOLDEN_AGE_END = 1960
GENRE_WORDS = {  # surface form -> catalogue genre
    "action": "Action", "adventure": "Adventure", "adventures": "Adventure", "animation": "Animation",
    "animated": "Animation", "children's": "Children's", "comedy": "Comedy", "comedies": "Comedy",
    "crime": "Crime", "documentary": "Documentary", "drama": "Drama", "dramas": "Drama", "fantasy": "Fantasy",
    "film-noir": "Film-Noir", "film noir": "Film-Noir", "noir": "Film-Noir", "horror": "Horror",
    "musical": "Musical", "musicals": "Musical", "mystery": "Mystery", "romance": "Romance",
    "romantic": "Romance", "sci-fi": "Sci-Fi", "science fiction": "Sci-Fi", "thriller": "Thriller",
    "thrillers": "Thriller", "war": "War", "western": "Western", "westerns": "Western",
}
GENRE = "|".join(sorted(map(re.escape, GENRE_WORDS), key=len, reverse=True))
GENRE_RE = re.compile(rf"(?<![\w-])(?:{GENRE})(?![\w-])", re.IGNORECASE)
GENRE_LIST = rf"(?:{GENRE})(?:(?:\s*,\s*|\s+and\s+|\s+or\s+)(?:{GENRE}))*"
DECADES = {"twenties": 1920, "thirties": 1930, "forties": 1940, "fifties": 1950, "sixties": 1960,
           "seventies": 1970, "eighties": 1980, "nineties": 1990}
THIRDS = {word: range(previous + 1, last + 1)  # the era keyword's thirds, as digit ranges for parsing
          for (previous, _), (last, word) in zip(((-1, ""), *ERA_THIRDS), ERA_THIRDS)}
ERA_RE = re.compile(
    r"(?<![\w-])(?:(?P<golden>golden[- ]age(?:\s+classic)?)|(?:(?P<third>early|mid|late)[- ]?)?"
    r"(?:(?P<word>" + "|".join(DECADES) + r")|(?:19)?(?P<digits>[2-9]0)['’]?s))(?![\w-])", re.IGNORECASE)
YEAR_AFTER_TITLE = re.compile(r"[\"'”’]?[^\S\n]*\((\d{4})\)")
QUOTED = re.compile(r'"([^"]*)"?|“([^”]*)”?')
SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*|\n")
BARE_SUBJECT = re.compile(r"(?:\A|(?<=\W))(?:the\s+(?:target|film|movie|candidate)(?:\s+in\s+question)?|"
                          r"this\s+(?:film|movie)|it)(?=\W)", re.IGNORECASE)
DESCRIPTION = re.compile(  # what follows a subject: "is (not) a <description>" or an appositive ", a <description>"
    r"[\"'”’]?(?:\s*\(\d{4}\))?(?:(?:(?:,\s*|\s+)(?:which|that))?,?(?:\s+(?:is|was)|['’]s)(?:\s+also)?"
    r"(?P<negated>\s+not)?\s+|\s*[,:]\s+)(?:a|an)\s+(?P<description>[^.;:!?()\"“”]*)", re.IGNORECASE)
DESCRIPTION_END = re.compile(r"(?<!\S)(?:that|which|who|with|about|but|whereas|where|than|for|from|in|of|by|"
                             rf"whose|starring|set)\b|,(?!\s*(?:and\s+|or\s+)?(?:{GENRE})(?![\w-]))", re.IGNORECASE)
SEPARATOR = re.compile(r"\A[\"'”’]?(?:\s*\(\d{4}\))?\s*(?:,\s*(?:and\s+|or\s+)?|\s+and\s+|\s+or\s+|\s*&\s*)"
                       r"[\"'“‘]?\Z", re.IGNORECASE)
SUBJECT = r"(?:they|the\s+user|he|she)\s+(?:also\s+|recently\s+|really\s+|once\s+|even\s+)*"
FILLER = r"(?:\s+(?:the\s+)?(?:films?|movies?))?(?:\s+(?:either|both))?\s*[\"'“‘]?\Z"
FARE = rf"(?:(?:{GENRE})(?:\s*,\s*|\s+and\s+)?)+\s+(?:films|fare|movies)\s+(?:such\s+as|like|including)"
REACTION_BEFORE = (  # (pattern ending right before the first title of a group, the user liked it)
    (re.compile(rf"\b{SUBJECT}(?:did\s+not|didn['’]t|never)\s+(?:dislike|disliked|hate|hated){FILLER}", re.I), True),
    (re.compile(rf"\b{SUBJECT}(?:did\s+not|didn['’]t|never)\s+(?:enjoy|like|love|care\s+for|appreciate)"
                rf"(?:d)?{FILLER}", re.I), False),
    (re.compile(rf"\b{SUBJECT}(?:disliked|hated|turned\s+down){FILLER}", re.I), False),
    (re.compile(rf"\b{SUBJECT}(?:turned\s+down\s+{FARE}){FILLER}", re.I), False),
    (re.compile(rf"\b{SUBJECT}(?:enjoyed|liked|loved|did\s+enjoy|did\s+like){FILLER}", re.I), True),
    (re.compile(rf"\b{SUBJECT}(?:enjoyed|liked|loved)\s+{FARE}{FILLER}", re.I), True),
    (re.compile(rf"\bhave\s+worked\s+for\s+them\s+before,\s+for\s+example{FILLER}", re.I), True),
    (re.compile(rf"\b(?:favou?rites|hits)\s+(?:include|such\s+as){FILLER}", re.I), True),
    (re.compile(rf"\bmisses\s+(?:include|such\s+as){FILLER}", re.I), False),
)
WHO = r"(?:they|the\s+user|he|she)"
REACTION_AFTER = (  # (pattern starting right after the last title of a group, the user liked it)
    (re.compile(r"\A[\"'”’]?(?:\s*\(\d{4}\))?\s*,?\s*(?:one\s+of\s+the\s+closest\s+matches\s+in\s+their\s+history,\s*)?"
                rf"(?:(?:which|that|a\s+(?:film|movie))\s+{WHO}\s+(?:also\s+)?(?:did\s+not|didn['’]t)\s+(?:enjoy|like)"
                rf"|(?:which|that|a\s+(?:film|movie))\s+{WHO}\s+(?:also\s+)?(?:disliked|hated)"
                r"|left\s+them\s+cold|did\s+not\s+win\s+them\s+over|did\s+not\s+work\s+for\s+them)\b", re.I), False),
    (re.compile(r"\A[\"'”’]?(?:\s*\(\d{4}\))?\s*,?\s*(?:one\s+of\s+the\s+closest\s+matches\s+in\s+their\s+history,\s*)?"
                rf"(?:(?:which|that|(?:was\s+)?a\s+(?:film|movie))\s+{WHO}\s+(?:also\s+)?(?:enjoyed|liked|loved)"
                r"|went\s+down\s+well\s+with\s+them|worked\s+for\s+them)\b", re.I), True),
)
COUNTER_OPENING = re.compile(r"\s*(?:although|even\s+though|though)\b", re.IGNORECASE)  # a counter-argument
NEGATION_BEFORE = re.compile(r"(?:\bnot|n['’]t|\bnever|\bunlikely\s+to\s+be)(?:\s+(?:a|an|very|so|that|too))*\s*\Z",
                             re.IGNORECASE)
AUDIENCE = (  # (pattern, signal, positive): "acclaim" and "popular" are tiers, "majority" is > half liking it
    (re.compile(r"\b(?:widely\s+|highly\s+|critically\s+)?acclaimed\b|\baudiences\s+(?:broadly\s+)?admired\s+it\b",
                re.I), "acclaim", True),
    (re.compile(r"\bpoorly[- ]received\b|\bmost\s+viewers\s+(?:did\s+not|didn['’]t)\s+(?:take\s+to|like|enjoy)\s+it\b",
                re.I), "majority", False),
    (re.compile(r"\bwell[- ](?:received|liked)\b|\bmost\s+viewers\s+(?:liked|enjoyed|loved)\s+it\b", re.I),
     "majority", True),
    (re.compile(r"\bcrowd[- ]favou?rite\b|\bone\s+of\s+the\s+most\s+watched\s+films\b", re.I), "popular", True),
    (re.compile(r"\blittle[- ]known\b|\bfew\s+viewers\s+have\s+picked\s+it\s+up\b", re.I), "popular", False),
)
AUDIENCE_SELF = re.compile(r"[^\S\n]*by\s+(?:the\s+user|them|him|her|this\s+user)\b", re.IGNORECASE)
PROFILE = (  # (pattern with a "genres" group, the user favours them)
    (re.compile(rf"(?P<genres>{GENRE_LIST})\s+(?:is|are)\s+among\s+the\s+genres\s+they\s+(?:favou?r|enjoy|like)\s+"
                r"(?:the\s+)?most\b", re.I), True),
    (re.compile(rf"(?P<genres>{GENRE_LIST})\s+(?:is|are)\s+among\s+the\s+genres\s+they\s+(?:enjoy|like)\s+"
                r"(?:the\s+)?least\b", re.I), False),
    (re.compile(rf"\btheir\s+profile\s+leans\s+towards?\s+(?P<genres>{GENRE_LIST})\b", re.I), True),
    (re.compile(rf"\btheir\s+profile\s+shows\s+little\s+appetite\s+for\s+(?P<genres>{GENRE_LIST})\b", re.I), False),
    (re.compile(rf"\b{WHO}\s+(?:generally\s+|usually\s+|tend\s+to\s+)?(?:enjoys?|likes?|loves?|favou?rs?|prefers?)\s+"
                rf"(?P<genres>{GENRE_LIST})(?:\s+(?:films|movies))?(?=\s*[.,;!?]|\s+(?:and|but)\b)", re.I), True),
    (re.compile(rf"\b{WHO}\s+(?:generally\s+|usually\s+)?(?:do\s+not|don['’]t|does\s+not|doesn['’]t)\s+"
                rf"(?:enjoy|like|love)\s+(?P<genres>{GENRE_LIST})(?:\s+(?:films|movies))?(?=\s*[.,;!?]|\s+(?:and|but)\b)",
                re.I), False),
)


@dataclass(frozen=True)
class Claim:
    """One checkable claim: where it is in the answer, what kind, the verdict and the fact behind it."""

    start: int
    end: int
    kind: str  # year | era | genre | reaction | audience | profile_genre
    verdict: str  # true | false | unchecked
    fact: str  # what it was checked against, in words
    argues_yes: bool | None = None  # the way it argues: Yes (a reaction: they liked the film), No, or neither
    counter: bool = False  # in the counter-argument, a sentence that opens with "Although"


@dataclass(frozen=True)
class Mention:
    """A catalogue film named in the answer."""

    start: int
    end: int
    items: tuple[int, ...]  # the catalogue items with that title


def era_of(year: int) -> str:
    """The worded era of a year, as the era keyword words it: ``1992`` -> ``early nineties``."""
    return (era_keyword(year) or f"{year // 10 * 10}s").removesuffix(" film")


def era_matches(match: re.Match, year: int) -> bool:
    """Whether the era phrase ``match`` (from ``ERA_RE``) holds for ``year``."""
    if match.group("golden"):
        return year < GOLDEN_AGE_END
    start = DECADES[match.group("word").lower()] if match.group("word") else 1900 + int(match.group("digits"))
    third = match.group("third")
    return year // 10 * 10 == start and (third is None or year % 10 in THIRDS[third.lower()])


def sentences(text: str, mentions: list[Mention]) -> list[tuple[int, int]]:
    """(start, end) of each sentence; a full stop or "!" inside a title ("L.A. Confidential") ends none."""
    spans, start = [], 0
    for end in SENTENCE_END.finditer(text):
        if not any(m.start <= end.start() < m.end for m in mentions):
            spans.append((start, end.end()))
            start = end.end()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def join(words) -> str:
    return ", ".join(words) if words else "none"


class ClaimChecker:
    """Finds and judges the claims of answers about one prepared dataset (build once, check many)."""

    def __init__(self, prepared: PreparedData, config: Config):
        items, users = prepared.items, prepared.users
        self.titles = items["title"].tolist()
        self.item_genres = items["genres"].tolist()  # as the prompt reads them for a guest's profile
        self.years = [None if pd.isna(year) else int(year) for year in items["year"]]
        self.genres = [tuple(g for g in genres if g != "unknown") for genres in items["genres"]]
        self.liked_genres = [tuple(g) for g in users["liked_genres"]]
        self.disliked_genres = [tuple(g) for g in users["disliked_genres"]]
        self.history_len = config.llm.history_len  # as the prompt shows it
        self.min_support = config.data.min_item_support  # as the audience keywords use it
        train = prepared.split("train")
        self.counts = np.bincount(train["item"], minlength=len(items))
        self.likes = np.bincount(train["item"], weights=train["label"], minlength=len(items))
        self.mean_rate = float(self.likes.sum() / max(self.counts.sum(), 1))
        self.tiers = [set(words) for words in audience_keywords(train, len(items), self.min_support)]
        self.items_of: dict[str, tuple[int, ...]] = {}  # title key -> the items with that title
        for item, title in enumerate(self.titles):
            self.items_of[title_key(title)] = (*self.items_of.get(title_key(title), ()), item)

    def shown_history(self, hist_items, hist_labels) -> dict[int, set[bool]]:
        """The history the prompt shows: item -> the labels it is shown with."""
        pairs = [(int(i), bool(label)) for i, label in zip(hist_items, hist_labels) if int(i) != PAD]
        pairs = pairs[-self.history_len:] if self.history_len else []
        shown: dict[int, set[bool]] = {}
        for item, liked in pairs:
            shown.setdefault(item, set()).add(liked)
        return shown

    def picks_profile(self, items, labels) -> tuple[list[str], list[str]]:
        """The favoured and avoided genres of a guest's picks, as the guest's prompt states them."""
        return genre_preferences(pd.DataFrame({"item": items, "label": labels}), self.item_genres)

    def check(self, text: str, user: int | None, item: int, hist_items, hist_labels,
              profile: tuple[list[str], list[str]] | None = None) -> list[Claim]:
        """Every claim of ``text``, the answer for ``user`` and target ``item`` with the shown history, in order.
        ``profile``, the (favoured, avoided) genres, replaces the dataset user's train profile (a guest's)."""
        shown = self.shown_history(hist_items, hist_labels)
        case_films = {item, *shown}
        mentions = [Mention(start, end, self.resolve(title, case_films))
                    for start, end, title in title_mentions(text, self.titles)]
        if profile is None:
            profile = self.liked_genres[user], self.disliked_genres[user]
        claims: list[Claim] = []
        last_film: int | None = None
        for start, end in sentences(text, mentions):
            inside = [m for m in mentions if start <= m.start < end]
            found = [*self.years_named(text, inside), *self.descriptions(text, start, end, inside, item, last_film),
                     *self.reactions(text, start, end, inside, item, shown)]
            if all(m.items == (item,) for m in inside) and self.quotes_only(text[start:end], item):
                found += self.audience(text, start, end, item)
            found += self.profile(text, start, end, profile, self.genres[item])
            counter = bool(COUNTER_OPENING.match(text, start))
            claims += [dataclasses.replace(c, counter=True) for c in found] if counter else found
            if inside:
                last_film = inside[-1].items[0] if len(inside[-1].items) == 1 else -1
        return sorted(claims, key=lambda c: (c.start, c.end))

    def settled(self, text: str) -> int:
        """How much of ``text``, an answer still streaming, no continuation can change: its claims and cited
        titles are final up to the last sentence end that white space follows (a line break needs nothing after
        it), that falls inside no title named so far and could not fall inside a longer title still to come."""
        mentions = title_mentions(text, self.titles)
        for end in reversed(list(SENTENCE_END.finditer(text))):
            cut = end.end()
            if end.group() != "\n" and not text[cut:cut + 1].isspace():
                continue
            if any(start <= end.start() < stop for start, stop, _ in mentions) or title_may_continue(text[:cut],
                                                                                                      self.titles):
                continue
            return cut
        return 0

    def quotes_only(self, sentence: str, target: int) -> bool:
        """Whether every quoted span of the sentence is the target's title (an unknown one is another film)."""
        title = self.titles[target].lower()
        return all((a or b).strip().lower() == title for a, b in QUOTED.findall(sentence))

    def resolve(self, title: str, case_films: set[int]) -> tuple[int, ...]:
        """The catalogue items a title names; the case's own film where the title is ambiguous."""
        items = self.items_of[title_key(title)]
        own = tuple(i for i in items if i in case_films)
        return own[:1] if own else items

    def describe(self, item: int) -> str:
        year = self.years[item]
        return f"\"{self.titles[item]}\"" + (f" ({year})" if year is not None else "")

    def years_named(self, text: str, mentions: list[Mention]) -> list[Claim]:
        claims = []
        for mention in mentions:
            match = YEAR_AFTER_TITLE.match(text, mention.end)
            if not match:
                continue
            stated = int(match.group(1))
            years = {self.years[i] for i in mention.items}
            if len(years) != 1 or None in years:
                claims.append(Claim(mention.start, match.end(), "year", UNCHECKED, "year not known in the data"))
                continue
            year = years.pop()
            claims.append(Claim(mention.start, match.end(), "year", TRUE if stated == year else FALSE,
                                f"{self.describe(mention.items[0])}"))
        return claims

    def descriptions(self, text: str, start: int, end: int, mentions: list[Mention], target: int,
                     last_film: int | None) -> list[Claim]:
        """Era and genre claims of descriptions whose subject is a named film or, bare, the target."""
        subjects = [(m.end, m.items[0]) for m in mentions if len(m.items) == 1]
        if last_film in (None, target) and not any(m.items != (target,) for m in mentions):
            subjects += [(match.end(), target) for match in BARE_SUBJECT.finditer(text, start, end)]
        claims = []
        for position, film in subjects:
            match = DESCRIPTION.match(text[:end], position)
            if match:
                claims += self.judge_description(text, match, film)
        return claims

    def judge_description(self, text: str, match: re.Match, film: int) -> list[Claim]:
        first = match.start("description")
        description = text[first:match.end("description")]
        cut = DESCRIPTION_END.search(description)
        description = description[:cut.start()] if cut else description
        negated = bool(match.group("negated"))
        claims = []
        year = self.years[film]
        for era in ERA_RE.finditer(description):
            span = (first + era.start(), first + era.end())
            if year is None:
                claims.append(Claim(*span, "era", UNCHECKED, f"\"{self.titles[film]}\": year not known"))
                continue
            holds = era_matches(era, year) != negated
            claims.append(Claim(*span, "era", TRUE if holds else FALSE, f"{self.describe(film)}: {era_of(year)}"))
        genres = self.genres[film]
        for word in GENRE_RE.finditer(description):
            genre = GENRE_WORDS[word.group().lower()]
            holds = (genre in genres) != negated
            claims.append(Claim(first + word.start(), first + word.end(), "genre", TRUE if holds else FALSE,
                                f"{self.describe(film)}: {join(genres)}"))
        return claims

    def reactions(self, text: str, start: int, end: int, mentions: list[Mention], target: int,
                  shown: dict[int, set[bool]]) -> list[Claim]:
        """Reactions the text gives the user to the history films it names."""
        claims = []
        for group in self.groups(text, mentions):
            before = text[start:group[0].start]
            after = text[group[-1].end:end]
            said = {liked for pattern, liked in REACTION_BEFORE if pattern.search(before)}
            said |= {liked for pattern, liked in REACTION_AFTER if pattern.match(after)}
            if len(said) != 1:
                continue
            liked = said.pop()
            for mention in group:
                if target in mention.items and target not in shown:
                    claims.append(self.target_rated(mention, liked))
                else:
                    claims.append(self.judge_reaction(mention, liked, shown))
        return claims

    def target_rated(self, mention: Mention, liked: bool) -> Claim:
        """A reaction the text gives the user to the target itself, which they have not rated: false."""
        said = "liked" if liked else "disliked"
        return Claim(mention.start, mention.end, "reaction", FALSE,
                     f"\"{self.titles[mention.items[0]]}\" is the target: they have not rated it (said: {said})",
                     liked)

    @staticmethod
    def groups(text: str, mentions: list[Mention]) -> list[list[Mention]]:
        """Runs of titles joined by commas, "and" or "or" ("X", "Y" and "Z")."""
        groups: list[list[Mention]] = []
        for mention in mentions:
            if groups and SEPARATOR.match(text[groups[-1][-1].end:mention.start]):
                groups[-1].append(mention)
            else:
                groups.append([mention])
        return groups

    def judge_reaction(self, mention: Mention, liked: bool, shown: dict[int, set[bool]]) -> Claim:
        said = "liked" if liked else "disliked"
        items = [i for i in mention.items if i in shown]
        if len(items) != 1:
            return Claim(mention.start, mention.end, "reaction", UNCHECKED,
                         f"\"{self.titles[mention.items[0]]}\" is not in the history the prompt shows (said: {said})",
                         liked)
        labels = shown[items[0]]
        if len(labels) != 1:
            return Claim(mention.start, mention.end, "reaction", UNCHECKED,
                         f"\"{self.titles[items[0]]}\" is shown both liked and disliked", liked)
        actual = next(iter(labels))
        return Claim(mention.start, mention.end, "reaction", TRUE if actual == liked else FALSE,
                     f"history: \"{self.titles[items[0]]}\" {'liked' if actual else 'disliked'}", liked)

    def audience(self, text: str, start: int, end: int, target: int) -> list[Claim]:
        """What viewers made of the target, against its train ratings."""
        claims, taken = [], []
        count, likes = int(self.counts[target]), float(self.likes[target])
        rate = likes / count if count else float("nan")
        for pattern, signal, positive in AUDIENCE:
            for match in pattern.finditer(text, start, end):
                overlaps = any(a < match.end() and match.start() < b for a, b in taken)
                if overlaps or AUDIENCE_SELF.match(text, match.end()):
                    continue
                taken.append(match.span())
                negation = NEGATION_BEFORE.search(text, start, match.start())
                negated = negation is not None
                if signal == "acclaim" and negated:
                    continue
                verdict = self.judge_audience(signal, positive, negated, target, rate, count)
                fact = (f"{count} train ratings, {rate:.0%} liked (mean {self.mean_rate:.0%})" if count
                        else "no train ratings")
                claims.append(Claim(negation.start() if negated else match.start(), match.end(), "audience", verdict,
                                    fact, argues_yes=positive != negated))
        return claims

    def judge_audience(self, signal: str, positive: bool, negated: bool, target: int, rate: float,
                       count: int) -> str:
        """``popular``: the popularity tiers (crowd favourite, little-known; in between is neither);
        ``acclaim``: the acclaimed tier, false below the mean like-rate; ``majority``: over half liked it."""
        tiers = self.tiers[target]
        if signal == "popular":
            if positive and not negated:
                return TRUE if "crowd favourite" in tiers else FALSE if "little-known" in tiers else UNCHECKED
            holds = ("crowd favourite" in tiers) if positive else ("little-known" in tiers)
            return TRUE if holds != negated else FALSE
        if count < self.min_support:
            return UNCHECKED
        if signal == "acclaim":
            return TRUE if "acclaimed" in tiers else FALSE if rate < self.mean_rate else UNCHECKED
        if rate == 0.5:
            return UNCHECKED
        return TRUE if (rate > 0.5) == (positive != negated) else FALSE

    @staticmethod
    def profile(text: str, start: int, end: int, profile: tuple[list[str], list[str]], target_genres: tuple[str, ...]
                ) -> list[Claim]:
        """The user's favoured or avoided genres, against their profile (favoured, avoided); a genre of the
        target argues for Yes when favoured, for No when avoided."""
        liked, disliked = profile
        fact = f"favoured: {join(liked)}; avoided: {join(disliked)}"
        claims = []
        for pattern, favoured in PROFILE:
            for match in pattern.finditer(text, start, end):
                offset = match.start("genres")
                for word in GENRE_RE.finditer(match.group("genres")):
                    genre = GENRE_WORDS[word.group().lower()]
                    same, opposite = (liked, disliked) if favoured else (disliked, liked)
                    verdict = TRUE if genre in same else FALSE if genre in opposite else UNCHECKED
                    claims.append(Claim(offset + word.start(), offset + word.end(), "profile_genre", verdict, fact,
                                        argues_yes=favoured if genre in target_genres else None))
        return claims

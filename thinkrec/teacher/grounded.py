"""The grounded teacher: a short multi-step trace built from the evidence, towards the known label.

The kept text follows the paper: ``"<Yes|No>. <trace>"``. The trace describes the film, gives the
strongest arguments for the verdict, acknowledges one counter-argument ("Although ..."), and
ends with the verdict. Titles appear in double quotes and only titles from the evidence are used.
Phrasing is drawn from several templates per step with an RNG keyed on (seed, user, item), so a
row always gets the same text while different rows read differently.

With ``statements`` the teacher words every argument as the prompt's evidence lines state it
(``stated_sides``: every argument for either verdict, one line each), so the student copies a line instead
of pairing each title with the user's reaction on its own: a small model does the first reliably and the
second at chance. A line that cites films names the user's reaction before the titles (``STATED``): the
student picks the line by the reaction its verdict needs, then copies the titles that follow it.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable, Sequence
from typing import Protocol

from thinkrec.teacher.evidence import Evidence, Signal, genre_signal, title_genres

MAX_SENTENCES = 5

OPENINGS = (
    "{T} is {desc}.",
    "The film in question, {T}, is {desc}.",
    "Consider {T}: {desc}.",
    "Start with the film itself: {T} is {desc}.",
    "Here the candidate is {T}, {desc}.",
)
NO_HISTORY = (
    "They have no earlier films on record, so only their profile can guide the call.",
    "With no viewing history to go on, I rely on their profile alone.",
    "There is no history for this user yet, so the reasoning rests on their profile.",
)
CLAUSES = {  # (kind, direction) -> clause templates over {titles}, {first}, {s}, {genre}, {detail}
    ("similar", "like"): (
        "it is close to {titles}, which they enjoyed",
        "{first}, one of the closest matches in their history, was a film they enjoyed",
        "its near neighbour{s} among their films, {titles}, went down well with them",
    ),
    ("similar", "dislike"): (
        "it is close to {titles}, which they did not enjoy",
        "{first}, one of the closest matches in their history, left them cold",
        "its near neighbour{s} among their films, {titles}, did not win them over",
    ),
    ("genre", "like"): (
        "they recently enjoyed {genre} films such as {titles}",
        "its {genre} side matches {titles}, which they liked",
        "{genre} films have worked for them before, for example {titles}",
    ),
    ("genre", "dislike"): (
        "{genre} films such as {titles} did not work for them recently",
        "its {genre} side echoes {titles}, which they disliked",
        "they turned down {genre} fare like {titles} before",
    ),
    ("link", "like"): (
        "it {detail} {first}, which they enjoyed",
        "it {detail} {first}, a film they liked",
    ),
    ("link", "dislike"): (
        "it {detail} {first}, which they did not enjoy",
        "it {detail} {first}, a film they disliked",
    ),
    ("profile_genre", "like"): (
        "{genre} is among the genres they favour most",
        "their profile leans towards {genre}",
    ),
    ("profile_genre", "dislike"): (
        "{genre} is among the genres they enjoy least",
        "their profile shows little appetite for {genre}",
    ),
    ("history_rate", "like"): (
        "they enjoyed most of their recent films",
        "their recent viewing has been mostly positive",
    ),
    ("history_rate", "dislike"): (
        "they turned down most of their recent films",
        "most of their recent picks disappointed them",
    ),
    ("profile_rate", "like"): (
        "they enjoy most of what they watch",
        "they are generally easy to please",
    ),
    ("profile_rate", "dislike"): (
        "they dislike much of what they watch",
        "they are generally hard to please",
    ),
}
STATED = {  # (kind, direction) -> an argument that cites films as a line states it: the reaction first
    ("similar", "like"): "they enjoyed {titles}, its nearest neighbour{s} in their history",
    ("similar", "dislike"): "they did not enjoy {titles}, its nearest neighbour{s} in their history",
    ("genre", "like"): "they recently enjoyed {genre} films such as {titles}",
    ("genre", "dislike"): "they recently turned down {genre} films such as {titles}",
    ("link", "like"): "they enjoyed {first}, a film it {detail}",
    ("link", "dislike"): "they did not enjoy {first}, a film it {detail}",
}
AUDIENCE_CLAUSES = {
    "acclaimed": ("audiences broadly admired it", "it is widely acclaimed"),
    "crowd favourite": ("it is a crowd favourite", "it is one of the most watched films around"),
    "poorly received": ("it was poorly received by most viewers", "most viewers did not take to it"),
    "little-known": ("it is a little-known title", "few viewers have picked it up"),
}
FIRST_SUPPORT = ("{C}.", "Notably, {c}.", "The clearest signal is that {c}.", "Most tellingly, {c}.")
MORE_SUPPORT = ("{C}.", "Also, {c}.", "On top of that, {c}.", "Besides, {c}.")
NO_SUPPORT = (
    "Nothing in the evidence settles it clearly, so this is a cautious call.",
    "The signals here are thin, so the call is a cautious one.",
)
REBUTTALS = ("the other signals weigh more", "that matters less here", "this does not outweigh the rest",
             "the points above carry more weight")
WEAK_REBUTTALS = ("it is not enough to change the call", "that alone does not decide it")
HISTORY = {  # label -> templates naming recent titles that agree with it
    1: ("Recently they also enjoyed {titles}.", "Their recent favourites include {titles}.",
        "Their history shows other hits such as {titles}."),
    0: ("Recently {titles} did not work for them either.", "Their recent misses include {titles}.",
        "Their history shows other misses such as {titles}."),
}
VERDICTS = {
    1: ("So I expect they will enjoy {T}.", "On balance, this is a film they would like.",
        "Overall, the evidence points to a yes.", "All told, they are likely to enjoy it."),
    0: ("So I expect they will not enjoy {T}.", "On balance, it is unlikely to win them over.",
        "Overall, the evidence points to a no.", "All told, they would probably pass on it."),
}


class Teacher(Protocol):
    """Anything that turns evidence and the known label into ``"<Yes|No>. <trace>"``."""

    name: str

    def explain(self, evidence: Evidence, label: int) -> str: ...


def verdict_word(label: int) -> str:
    return "Yes" if int(label) == 1 else "No"


def quote(title: str) -> str:
    return f'"{title}"'


def join_words(words) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def with_article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def describe_film(evidence: Evidence) -> str:
    """E.g. ``a late nineties comedy and drama film``."""
    genres = [g.lower() for g in evidence.genres if g.lower() != "unknown"][:3]
    era = evidence.era.removesuffix(" film").removesuffix(" classic")
    words = " ".join(w for w in (era, join_words(genres) if genres else "") if w)
    return with_article(f"{words} film" if words else "film")


Choose = Callable[[Sequence[str]], str]


def render_clause(signal: Signal, choose: Choose) -> str:
    """One argument as a clause (no capital, no full stop); ``choose`` picks the template."""
    if signal.kind == "audience":
        return choose(AUDIENCE_CLAUSES[signal.detail])
    return fill(choose(CLAUSES[(signal.kind, signal.points_to)]), signal)


def stated_clause(signal: Signal) -> str:
    """One argument as the prompt's evidence line words it (``STATED``, else the first template)."""
    template = STATED.get((signal.kind, signal.points_to))
    return fill(template, signal) if template else render_clause(signal, first_template)


def fill(template: str, signal: Signal) -> str:
    titles = [quote(t) for t in signal.titles]
    return template.format(titles=join_words(titles) if titles else "", first=titles[0] if titles else "",
                           genre=join_words([g.lower() for g in signal.genres]) if signal.genres else "",
                           detail=signal.detail, s="s" if len(titles) > 1 else "")


def describe_signal(signal: Signal) -> str:
    """A plain statement of one argument, as a line of the prompt states it."""
    return capitalise(stated_clause(signal)) + "."


def first_template(options: Sequence[str]) -> str:
    return options[0]


def stated_sides(signals: Sequence[Signal], genres_of: dict[str, set[str]]) -> tuple[list[str], list[str]]:
    """The prompt's evidence lines, (for a like, for a dislike): every argument for either verdict
    (``EvidenceBuilder.signals``) as the teacher states it; within a side one per kind and each title once, as
    ``pick_support`` chooses them, so the teacher's counter-argument is always a line."""
    like, dislike = ([describe_signal(signal) for signal in
                      pick_support(tuple(s for s in signals if s.points_to == side), len(signals), genres_of)]
                     for side in ("like", "dislike"))
    return like, dislike


def pick_support(support: tuple[Signal, ...], limit: int, genres_of: dict[str, set[str]] | None = None) -> list[Signal]:
    """The strongest arguments, one per kind; a title is cited once (an argument left without one is skipped).
    A genre argument that loses titles names only the genres its remaining films have (``genres_of``)."""
    chosen: list[Signal] = []
    cited: set[str] = set()
    for signal in support:
        if len(chosen) == limit:
            break
        fresh = tuple(t for t in signal.titles if t not in cited)
        if any(s.kind == signal.kind for s in chosen) or (signal.titles and not fresh):
            continue
        if signal.kind == "genre" and genres_of is not None and fresh != signal.titles:
            narrowed = genre_signal(signal.points_to, signal.weight, fresh, signal.genres, genres_of)
        else:
            narrowed = dataclasses.replace(signal, titles=fresh)
        chosen.append(narrowed)
        cited.update(fresh)
    return chosen


class GroundedTeacher:
    """Writes a trace from the evidence alone; deterministic per (seed, user, item)."""

    name = "grounded"

    def __init__(self, seed: int = 0, statements: bool = False):
        self.seed = seed
        self.statements = statements

    def clause(self, signal: Signal, rng: random.Random) -> str:
        """One argument; with ``statements`` it reads as its evidence line."""
        return stated_clause(signal) if self.statements else render_clause(signal, rng.choice)

    def explain(self, evidence: Evidence, label: int) -> str:
        rng = random.Random(f"{self.seed}:{evidence.user}:{evidence.item}")
        support, counter = evidence.arguments(label)
        title = quote(evidence.title)
        opening = [rng.choice(OPENINGS).format(T=title, desc=describe_film(evidence))]
        if not evidence.has_history:
            opening.append(rng.choice(NO_HISTORY))
        room = MAX_SENTENCES - len(opening) - 1 - (1 if counter else 0)
        chosen = pick_support(support, room, title_genres(evidence.history))
        body = self.arguments(chosen, rng)
        if len(chosen) < room:  # spare room: name more recent titles that agree with the label
            cited = {t for s in (*chosen, *counter[:1]) for t in s.titles}
            body.extend(history_sentence(evidence, label, cited, rng))
        if counter:
            rebuttals = REBUTTALS if chosen else WEAK_REBUTTALS
            body.append(f"Although {self.clause(counter[0], rng)}, {rng.choice(rebuttals)}.")
        verdict = rng.choice(VERDICTS[int(label)]).format(T=title)
        return f"{verdict_word(label)}. " + " ".join([*opening, *body, verdict])

    def arguments(self, chosen: list[Signal], rng: random.Random) -> list[str]:
        """One sentence per argument, with varied connectives; a cautious line when there is none."""
        if not chosen:
            return [rng.choice(NO_SUPPORT)]
        wrappers = [rng.choice(FIRST_SUPPORT), *rng.sample(MORE_SUPPORT, len(chosen) - 1)]
        sentences = []
        for signal, wrapper in zip(chosen, wrappers):
            clause = self.clause(signal, rng)
            sentences.append(wrapper.format(C=capitalise(clause), c=clause))
        return sentences


def history_sentence(evidence: Evidence, label: int, cited: set[str], rng: random.Random) -> list[str]:
    """A sentence naming up to two recent titles that agree with ``label`` and are not cited yet."""
    titles = [quote(h.title) for h in reversed(evidence.history)
              if h.liked == bool(label) and h.title not in cited][:2]
    return [rng.choice(HISTORY[int(label)]).format(titles=join_words(titles))] if titles else []


QUOTED = re.compile(r'"([^"]*)"|\u201c([^\u201d]*)\u201d')


def cited_titles(text: str) -> list[str]:
    """Every span in straight or curly double quotes."""
    return [a or b for a, b in QUOTED.findall(text)]


def check_trace(text: str, label: int, allowed_titles) -> str | None:
    """Why ``text`` is not an acceptable trace for ``label`` (``None`` when it is)."""
    verdict = verdict_word(label) + "."
    if not text.startswith(verdict):
        return f"does not start with {verdict!r}"
    if not text[len(verdict):].strip():
        return "no reasoning after the verdict"
    unknown = [t for t in cited_titles(text) if t not in allowed_titles]
    if unknown:
        return f"cites titles not in the evidence: {unknown}"
    return None

"""Paired intervals for the reasoning measures: is one system's text truer, or less repetitive, than another's on
the same reference rows?

Each measure compared here is a ratio of per-answer counts, hits over judged: claim accuracy (true claims over
checked claims), argument agreement (arguments in their place over arguments judged), grounding (cited titles
the prompt shows over titles cited), and the shares of answers that state a false claim, repeat an argument, glue
two words together, loop or end complete (one judged per answer).
``answer_tallies`` gives those counts; the ratios of their sums are ``text_metrics.text_measures``' figures
(grounding: ``text_metrics.grounding_rate``). The
interval of a difference resamples users (``intervals.UserBootstrap``, as the AUC intervals do), and a drawn user's
answers weigh alike in both systems, so the interval is paired.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from thinkrec.intervals import Interval, UserBootstrap
from thinkrec.text_metrics import (
    complete,
    glued_words,
    grounding_of,
    loops,
    placed_arguments,
    repeats,
    states_falsehood,
    title_words,
)


@dataclass(frozen=True)
class TextMeasure:
    """One compared measure: its key in ``text_measures``, its name in a table, and which way is better."""

    key: str
    label: str
    higher_is_better: bool


MEASURES = (TextMeasure("claim_accuracy", "claim accuracy", True),
            TextMeasure("falsehood_rate", "answers with a false claim", False),
            TextMeasure("argument_agreement", "argument agreement", True),
            TextMeasure("grounding_rate", "grounding", True),
            TextMeasure("repetition_rate", "repetition", False),
            TextMeasure("garble_rate", "garbled", False),
            TextMeasure("loop_rate", "loop rate", False),
            TextMeasure("completion_rate", "completion", True))


def answer_tallies(texts: list[str], claims_per_text: list[list], allowed: list[set[str]], catalogue_titles: list[str],
                   new_tokens: list[int] | None = None, max_new_tokens: int | None = None) -> dict[str, np.ndarray]:
    """Per measure key of ``MEASURES``, an (answers, 2) array of (hits, judged), one row per text: ``allowed``
    holds each text's titles that its prompt shows (as ``grounding_rate`` takes them), the catalogue's words are
    never glued (``title_words``), the other arguments are ``text_measures``'."""
    counts = new_tokens if new_tokens is not None else [None] * len(texts)
    known_words = title_words(catalogue_titles)
    rows: dict[str, list[tuple[int, int]]] = {measure.key: [] for measure in MEASURES}
    for text, claims, titles, tokens in zip(texts, claims_per_text, allowed, counts, strict=True):
        checked = [claim for claim in claims if claim.verdict != "unchecked"]
        rows["claim_accuracy"].append((sum(claim.verdict == "true" for claim in checked), len(checked)))
        rows["falsehood_rate"].append((int(states_falsehood(claims)), 1))
        rows["argument_agreement"].append(placed_arguments(text, claims))
        grounded, ungrounded = grounding_of(text, titles, catalogue_titles)
        rows["grounding_rate"].append((len(grounded), len(grounded) + len(ungrounded)))
        rows["repetition_rate"].append((int(repeats(text, claims)), 1))
        rows["garble_rate"].append((int(bool(glued_words(text, known_words))), 1))
        rows["loop_rate"].append((int(loops(text)), 1))
        rows["completion_rate"].append((int(complete(text, tokens, max_new_tokens)), 1))
    return {key: np.array(value, dtype=float).reshape(-1, 2) for key, value in rows.items()}


def _ratio(hits: np.ndarray, judged: np.ndarray) -> np.ndarray:
    return np.where(judged > 0, hits / np.where(judged > 0, judged, 1.0), np.nan)


def ratio_difference(bootstrap: UserBootstrap, tally: np.ndarray, base: np.ndarray) -> Interval:
    """``tally``'s ratio of sums minus ``base``'s, over the same answers (rows aligned with the users
    ``bootstrap`` was drawn for), with its paired percentile interval."""
    if tally.shape != base.shape or len(tally) != len(bootstrap.codes):
        raise ValueError(f"tallies of shapes {tally.shape} and {base.shape} for {len(bootstrap.codes)} answers")
    estimate = float(_ratio(tally[:, 0].sum(), tally[:, 1].sum()) - _ratio(base[:, 0].sum(), base[:, 1].sum()))
    weights = bootstrap.counts[:, bootstrap.codes].astype(float)
    resampled = (_ratio(weights @ tally[:, 0], weights @ tally[:, 1])
                 - _ratio(weights @ base[:, 0], weights @ base[:, 1]))
    return bootstrap.interval(estimate, resampled)


def judged(difference: Interval, measure: TextMeasure) -> str:
    """"better" or "worse" when the whole interval lies on one side of 0 (which side is better depends on the
    measure), "level" when it holds 0, "n/a" without an interval."""
    if math.isnan(difference.low) or math.isnan(difference.high):
        return "n/a"
    if difference.low > 0 or difference.high < 0:
        return "better" if (difference.low > 0) == measure.higher_is_better else "worse"
    return "level"

"""Paired intervals of the reasoning measures: per-answer tallies that add up to text_measures' figures, and
differences whose verdict follows the interval and the measure's direction."""

from __future__ import annotations

import numpy as np
import pytest

from thinkrec.claims import Claim
from thinkrec.intervals import UserBootstrap
from thinkrec.text_intervals import MEASURES, answer_tallies, judged, ratio_difference
from thinkrec.text_metrics import grounding_rate, text_measures

TEXTS = ['Yes. They enjoyed "Heat". They enjoyed "Heat". So I expect they will enjoy it.',
         'No. Although they enjoyed "Fargo", they did not enjoy "Alien". It is a comedy',
         "Yes. It is a film and a film and a film and a film."]


def span(text: str, words: str, start: int = 0) -> tuple[int, int]:
    at = text.index(words, start)
    return at, at + len(words)


HEAT = span(TEXTS[0], "Heat"), span(TEXTS[0], "Heat", span(TEXTS[0], "Heat")[1])
CLAIMS = [[Claim(*HEAT[0], "reaction", "true", "", argues_yes=True),
           Claim(*HEAT[1], "reaction", "false", "", argues_yes=True)],
          [Claim(*span(TEXTS[1], "Fargo"), "reaction", "true", "", argues_yes=True, counter=True),
           Claim(*span(TEXTS[1], "Alien"), "reaction", "true", "", argues_yes=False),
           Claim(*span(TEXTS[1], "comedy"), "genre", "unchecked", "")],
          [Claim(*span(TEXTS[2], "film"), "era", "false", "")]]


CATALOGUE = ["Heat", "Fargo", "Alien", "Brazil"]
SHOWN = [{"Heat"}, {"Fargo"}, {"Heat"}]  # the second answer cites "Alien", which its prompt does not show


def test_tallies_add_up_to_the_measures_of_text_measures():
    tallies = answer_tallies(TEXTS, CLAIMS, SHOWN, CATALOGUE, [30, 160, 40], 160)
    measures = text_measures(TEXTS, CLAIMS, [30, 160, 40], 160) | {
        "grounding_rate": grounding_rate(TEXTS, SHOWN, CATALOGUE)}
    assert set(tallies) == {measure.key for measure in MEASURES}
    for key, tally in tallies.items():
        assert tally.shape == (3, 2)
        assert tally[:, 0].sum() / tally[:, 1].sum() == pytest.approx(measures[key], abs=1e-4), key
    assert tallies["claim_accuracy"].tolist() == [[1, 2], [2, 2], [0, 1]]  # the unchecked claim is not judged
    assert tallies["falsehood_rate"].tolist() == [[1, 1], [0, 1], [1, 1]]  # one false claim is enough
    assert tallies["repetition_rate"][:, 0].tolist() == [1, 0, 1]  # "Heat" given a reaction twice; a phrase twice
    assert tallies["loop_rate"][:, 0].tolist() == [0, 0, 1]
    assert tallies["argument_agreement"].tolist() == [[2, 2], [2, 2], [0, 0]]  # "Although" + liked: in its place
    assert tallies["completion_rate"][:, 0].tolist() == [1, 0, 1]  # the second is cut at the cap
    assert tallies["grounding_rate"].tolist() == [[1, 1], [1, 2], [0, 0]]  # each title once; the third cites none


def test_a_difference_on_the_same_answers_is_paired():
    users = np.array([1, 1, 2, 3, 4, 5])
    bootstrap = UserBootstrap(users, 500, 0)
    same = np.array([[1, 2], [0, 1], [2, 3], [1, 1], [0, 2], [3, 4]], dtype=float)
    level = ratio_difference(bootstrap, same, same)
    assert (level.estimate, level.low, level.high) == (0.0, 0.0, 0.0)
    assert judged(level, MEASURES[0]) == "level"
    better = same.copy()
    better[:, 0] = better[:, 1]  # every claim true
    difference = ratio_difference(bootstrap, better, same)
    assert difference.estimate == pytest.approx(1 - 7 / 13) and difference.low > 0
    accuracy, repetition = MEASURES[0], next(m for m in MEASURES if m.key == "repetition_rate")
    assert judged(difference, accuracy) == "better" and judged(difference, repetition) == "worse"


def test_mismatched_tallies_are_refused():
    bootstrap = UserBootstrap(np.array([1, 2]), 10, 0)
    with pytest.raises(ValueError, match="tallies"):
        ratio_difference(bootstrap, np.ones((2, 2)), np.ones((3, 2)))

"""The claim checker on the 4-user fixture: every claim kind found and judged, unparseable claims left out.

Fixture facts used below: "Laugh Track" (1997, Comedy; 6 train ratings, 2 liked, a crowd favourite),
"Quiet Sea" (1996, Drama and Romance; acclaimed), "The Garden" (1994, Drama), "Old Reel" (1952).
User 0's shown history for the target "Laugh Track": Alpha liked, Alpha Returns disliked, The Garden
disliked, Quiet Sea liked. User 1 favours Drama.
"""

from __future__ import annotations

import re

import pytest

from thinkrec.claims import ClaimChecker, era_of

LAUGH_TRACK, QUIET_SEA = 4, 3
HISTORY = ([0, 1, 2, 3], [1, 0, 0, 1])


@pytest.fixture
def checker(tiny_prepared, tiny_config):
    tiny_prepared.users.at[0, "disliked_genres"] = ["Comedy"]  # give user 0 an avoided genre
    return ClaimChecker(tiny_prepared, tiny_config)


def judged(checker, text, user=0, item=LAUGH_TRACK, history=HISTORY):
    """(kind, claimed words, verdict) of every claim in ``text``."""
    return [(c.kind, text[c.start:c.end], c.verdict) for c in checker.check(text, user, item, *history)]


@pytest.mark.parametrize(("year", "era"), [(1990, "early nineties"), (1992, "early nineties"),
                                           (1995, "mid nineties"), (1996, "mid nineties"), (1997, "late nineties"),
                                           (1964, "mid sixties"), (1952, "golden-age classic")])
def test_eras_are_thirds_of_a_decade(year, era):
    assert era_of(year) == era


def test_era_genre_and_year_of_the_target(checker):
    text = 'Yes. "Laugh Track" (1997) is a late nineties comedy film. It is not a drama.'
    assert judged(checker, text) == [("year", 'Laugh Track" (1997)', "true"), ("era", "late nineties", "true"),
                                     ("genre", "comedy", "true"), ("genre", "drama", "true")]
    text = 'No. "Laugh Track" (1995) is an early nineties horror and comedy film. The film is a drama.'
    assert judged(checker, text) == [("year", 'Laugh Track" (1995)', "false"), ("era", "early nineties", "false"),
                                     ("genre", "horror", "false"), ("genre", "comedy", "true"),
                                     ("genre", "drama", "false")]


def test_history_film_descriptions_and_the_facts_behind_them(checker):
    text = 'No. "The Garden" is a late nineties drama. Consider "Quiet Sea": a mid-nineties romance.'
    claims = checker.check(text, 0, LAUGH_TRACK, *HISTORY)
    assert [(c.kind, c.verdict) for c in claims] == [("era", "false"), ("genre", "true"), ("era", "true"),
                                                     ("genre", "true")]
    assert claims[0].fact == '"The Garden" (1994): mid nineties'
    assert claims[3].fact == '"Quiet Sea" (1996): Drama, Romance'


def test_reactions_to_history_films(checker):
    text = ('No. They did not enjoy "The Garden" and "Alpha". "Quiet Sea", which they liked, is close. '
            'Their recent misses include "Alpha Returns". "Alpha", one of the closest matches in their history, '
            'left them cold.')
    assert judged(checker, text) == [("reaction", "The Garden", "true"), ("reaction", "Alpha", "false"),
                                     ("reaction", "Quiet Sea", "true"), ("reaction", "Alpha Returns", "true"),
                                     ("reaction", "Alpha", "false")]
    assert checker.check('No. They liked "Alpha Returns".', 0, LAUGH_TRACK, *HISTORY)[0].fact == \
        'history: "Alpha Returns" disliked'


def test_reactions_outside_the_shown_history_and_to_the_target(checker):
    text = 'No. They enjoyed "Old Reel". They did not like "Laugh Track". They would not enjoy "Alpha".'
    # a past reaction to the target is false (they have not rated it); a prediction is no reaction
    assert judged(checker, text) == [("reaction", "Old Reel", "unchecked"), ("reaction", "Laugh Track", "false")]
    claim = checker.check('Yes. Although they did not enjoy "Laugh Track" before, it fits.', 0, LAUGH_TRACK,
                          *HISTORY)[0]
    assert (claim.verdict, claim.argues_yes, claim.counter) == ("false", False, True)
    assert claim.fact == '"Laugh Track" is the target: they have not rated it (said: disliked)'
    assert judged(checker, 'Yes. So I expect they will enjoy "Laugh Track".') == []


def test_audience_claims(checker):
    text = ('No. Most viewers did not take to it. It was not well received. It is a crowd favourite. '
            'It is widely acclaimed. It is a little-known title.')
    assert judged(checker, text) == [("audience", "Most viewers did not take to it", "true"),
                                     ("audience", "not well received", "true"),
                                     ("audience", "crowd favourite", "true"),
                                     ("audience", "widely acclaimed", "false"),
                                     ("audience", "little-known", "false")]
    assert judged(checker, "Yes. It is widely acclaimed.", item=QUIET_SEA) == \
        [("audience", "widely acclaimed", "true")]


def test_audience_claims_about_other_films_are_left_out(checker):
    text = 'No. "Alpha" was well received. The crowd favourite, "Made Up Title", was a hit.'
    assert judged(checker, text) == []


def test_profile_genres(checker):
    text = "No. Their profile shows little appetite for comedy. Comedy is among the genres they favour most."
    assert judged(checker, text) == [("profile_genre", "comedy", "true"), ("profile_genre", "Comedy", "false")]
    text = "Yes. Drama is among the genres they favour most. Their profile leans towards action."
    assert judged(checker, text, user=1, item=QUIET_SEA, history=([0, 2], [0, 0])) == [
        ("profile_genre", "Drama", "true"), ("profile_genre", "action", "unchecked")]


def test_unparseable_claims_are_left_out(checker):
    text = ('No. The film is a late ninetties comedie. They were not fond of Alpha. Maybe it is a kind of drama '
            'for some. "Alpha" and "The Garden" are comedies.')
    assert judged(checker, text) == []


def test_a_bare_subject_means_the_target_only_after_the_target(checker):
    text = 'No. They enjoyed "Alpha". It is a comedy. "Laugh Track" is here. It is a comedy.'
    assert judged(checker, text) == [("reaction", "Alpha", "true"), ("genre", "comedy", "true")]


def test_a_guests_genre_claims_are_checked_against_their_picks(checker):
    text = "Yes. Drama is among the genres they favour most. Their profile leans towards comedy."
    picks = checker.picks_profile([2, 3, 5, 0, 1, 4], [1, 1, 1, 0, 0, 0])  # every drama liked
    assert picks == (["Drama"], [])
    guest = checker.check(text, None, QUIET_SEA, [0, 2], [0, 0], profile=picks)
    assert [(text[c.start:c.end], c.verdict) for c in guest] == [("Drama", "true"), ("comedy", "unchecked")]
    assert guest[0].fact == "favoured: Drama; avoided: none"
    assert judged(checker, text, item=QUIET_SEA)[1] == ("profile_genre", "comedy", "false")  # user 0 avoids it


STREAMED = ('No. "Laugh Track" (1997) is a late nineties comedy. They did not enjoy "The Garden" or "Dr. Alpha".\n'
            'They enjoyed "Old Reel". Most viewers did not take to it. "Dr. Alpha" is a late nineties drama! '
            'Their profile shows little appetite for comedy.')


def test_what_a_streamed_prefix_marks_is_final(checker, tiny_prepared, tiny_config):
    tiny_prepared.items.at[0, "title"] = "Dr. Alpha"  # a title with a full stop inside
    checker = ClaimChecker(tiny_prepared, tiny_config)
    final = checker.check(STREAMED, 0, LAUGH_TRACK, *HISTORY)
    assert {c.verdict for c in final} == {"true", "false", "unchecked"}
    cuts = []
    for length in range(len(STREAMED) + 1):
        prefix = STREAMED[:length]
        cut = checker.settled(prefix)
        assert checker.check(prefix[:cut], 0, LAUGH_TRACK, *HISTORY) == [c for c in final if c.end <= cut]
        assert not [c for c in final if c.start < cut < c.end]
        cuts.append(cut)
    after_dr = [m.end() for m in re.finditer(r"Dr\.", STREAMED)]
    assert cuts == sorted(cuts) and not set(after_dr) & set(cuts)  # no break after "Dr."
    ends = [STREAMED.index(end) + len(end) for end in ("No.", "comedy.", 'Alpha".\n', 'Reel".', "to it.", "drama!")]
    assert sorted(set(cuts)) == [0, *ends]  # sentence by sentence; the last one only once the answer has ended
    assert checker.settled(STREAMED) < len(STREAMED) and checker.settled(STREAMED + " ") == len(STREAMED)


def test_a_reaction_records_what_it_says_and_whether_it_is_the_counter_argument(checker):
    from thinkrec.text_metrics import argument_agreement

    text = ('No. They did not enjoy "The Garden", its nearest neighbour. They enjoyed "Quiet Sea" too. '
            'Although they enjoyed "Alpha", the other signals weigh more.')
    claims = [c for c in checker.check(text, 0, LAUGH_TRACK, *HISTORY) if c.kind == "reaction"]
    assert [(text[c.start:c.end], c.verdict, c.argues_yes, c.counter) for c in claims] == [
        ("The Garden", "true", False, False), ("Quiet Sea", "true", True, False), ("Alpha", "true", True, True)]
    # every reaction is true, but "Quiet Sea", liked, argues for a Yes inside an answer that says No
    assert argument_agreement([text], [claims]) == (pytest.approx(2 / 3), 3)
    assert argument_agreement(["Yes" + text[2:]], [claims]) == (pytest.approx(1 / 3), 3)


def test_audience_and_genre_appetite_argue_a_side_too(checker):
    from thinkrec.text_metrics import argument_agreement

    text = ("No. Comedy is among the genres they enjoy least. Although it was poorly received by most viewers, "
            "the other signals weigh more.")
    claims = checker.check(text, 0, LAUGH_TRACK, *HISTORY)
    assert [(c.kind, c.argues_yes, c.counter) for c in claims] == [
        ("profile_genre", False, False), ("audience", False, True)]
    # the counter-argument concedes nothing: "poorly received" argues for the verdict's own No
    assert argument_agreement([text], [claims]) == (pytest.approx(1 / 2), 2)
    assert [c.argues_yes for c in checker.check("Yes. It was not well received. It is a crowd favourite.", 0,
                                                LAUGH_TRACK, *HISTORY)] == [False, True]
    other_genre = checker.check("Yes. Drama is among the genres they favour most.", 1, LAUGH_TRACK, *HISTORY)
    assert [c.argues_yes for c in other_genre] == [None]  # not a genre of the comedy "Laugh Track": no side


def test_an_argument_stated_twice_is_a_repetition(checker):
    from thinkrec.text_metrics import repeats, repetition_rate

    def repeated(text):
        return repeats(text, checker.check(text, 0, LAUGH_TRACK, *HISTORY))

    line = 'they enjoyed "Quiet Sea", its nearest neighbour in their history.'
    assert repeated(f"Yes. Most tellingly, {line} On top of that, {line}")  # one line said twice
    assert repeated('Yes. They enjoyed "Quiet Sea". Although they did not enjoy "Quiet Sea", it fits.')
    assert repeated("Yes. It is a comedy of its time. Besides, it is a comedy of its time.")
    assert repeated("No. The clearest signal is that they enjoy most of what they watch. Although they enjoy "
                    "most of what they watch, this does not outweigh the rest.")  # a profile argument twice
    assert not repeated(f'Yes. {line} Although they did not enjoy "The Garden", its nearest neighbour in their '
                        'history, that matters less here. So I expect they will enjoy "Laugh Track".')
    assert not repeated("Yes. It fits. Also, it fits.")  # under seven words: no argument
    assert not repeated('No. "The Garden", one of the closest matches in their history, left them cold. Although '
                        '"Quiet Sea", one of the closest matches in their history, was a film they enjoyed, it is '
                        'less.')  # one frame, two films
    long_title = '"Like Water For Chocolate (Como agua para chocolate)"'
    assert not repeated(f"Yes. {long_title} is a drama. So I expect they will enjoy {long_title}.")  # one word
    texts = [f"Yes. {line} Also, {line}", "No. They did not enjoy \"The Garden\"."]
    assert repetition_rate(texts, [checker.check(t, 0, LAUGH_TRACK, *HISTORY) for t in texts]) == 0.5

"""Reasoning-text metrics: overlap scores, cited-title grounding, stated verdicts, loops, completion,
claim accuracy and conclusion agreement."""

from __future__ import annotations

import math

import nltk
import pytest

from thinkrec.assets import resolve_asset
from thinkrec.claims import Claim
from thinkrec.text_metrics import (
    bleu4,
    cited_titles,
    claim_accuracy,
    claims_by_kind,
    complete,
    completion_rate,
    conclusion_report,
    explanation_report,
    falsehood_rate,
    garble_rate,
    glued_words,
    grounding_of,
    grounding_rate,
    last_sentence,
    loop_rate,
    loops,
    meteor,
    rouge_l,
    sentence_stance,
    stated_verdict,
    states_falsehood,
    text_measures,
    title_may_continue,
    title_mentions,
    title_words,
    unknown_titles,
    verdict_agreement,
    verdict_report,
)

REFS = ["the user liked the space adventure films a lot", "she enjoys quiet dramas about families"]
UNRELATED = ["banana orange kiwi grape melon pear", "pink blue green red black white"]
CATALOGUE = ["Toy Story", "Toy Story 2", "Alien", "Aliens", "Star Wars",
             "Star Wars: The Empire Strikes Back", "Heat", "Airplane!", "Up", "Fargo"]


def meteor_by_hand(matches: int, chunks: int, hyp_len: int, ref_len: int) -> float:
    """nltk's METEOR (alpha 0.9, beta 3, gamma 0.5) from its alignment counts."""
    precision, recall = matches / hyp_len, matches / ref_len
    fmean = precision * recall / (0.9 * precision + 0.1 * recall)
    return fmean * (1 - 0.5 * (chunks / matches) ** 3)


def test_meteor_identical_high_unrelated_low():
    assert meteor(REFS, REFS) > 0.9
    assert meteor(REFS, UNRELATED) < 0.2


def test_meteor_uses_wordnet_asset_offline():
    meteor(REFS, REFS)
    meteor(REFS, REFS)
    root = str(resolve_asset("wordnet"))
    assert nltk.data.path[0] == root
    assert nltk.data.path.count(root) == 1
    assert nltk.corpus.wordnet.root.path.startswith(root)


def test_meteor_matches_wordnet_synonyms():
    # "car" and "auto" share the synset car.n.01; both are their own Porter stems. (nltk stems the
    # reference before the synonym stage, so "film"/"movie" do not match: "movie" -> "movi".)
    ref = ["she bought a new car yesterday"]
    synonym = meteor(ref, ["she bought a new auto yesterday"])
    unrelated = meteor(ref, ["she bought a new bus yesterday"])
    assert synonym == pytest.approx(meteor_by_hand(matches=6, chunks=1, hyp_len=6, ref_len=6))
    assert unrelated == pytest.approx(meteor_by_hand(matches=5, chunks=2, hyp_len=6, ref_len=6))
    assert synonym > unrelated


def test_bleu4_identical_and_disjoint():
    assert bleu4(REFS, REFS) == pytest.approx(1.0)
    assert bleu4(REFS, UNRELATED) == 0.0


def test_rouge_l_hand_computed():
    # Pair 1: LCS "the cat on mat" = 4; P = 4/4, R = 4/6 -> F1 = 0.8.
    # Pair 2 (stemmed): [he, like, the, movi] vs [she, like, movi]; LCS 2, P = 2/3, R = 2/4 -> F1 = 4/7.
    refs = ["the cat sat on the mat", "he liked the movies"]
    hyps = ["the cat on mat", "she likes movie"]
    assert rouge_l(refs, hyps) == pytest.approx((0.8 + 4 / 7) / 2)


@pytest.mark.parametrize("metric", [meteor, bleu4, rouge_l])
def test_overlap_metrics_reject_bad_lengths(metric):
    with pytest.raises(ValueError):
        metric(REFS, REFS[:1])
    with pytest.raises(ValueError):
        metric([], [])


@pytest.mark.parametrize(("text", "expected"), [
    ('They loved "Toy Story 2" and Toy Story.', ["Toy Story 2", "Toy Story"]),
    ("They loved toy story, the film.", []),  # a title's words in lower case are words, not a citation
    ("Heat (1995) and heat; aliens (1986), not alien", ["Heat", "Aliens"]),  # a one-word title with its year
    ('"ALIENS" fans, not "alien" fans: Aliens again', ["Aliens", "Alien"]),
    ('"Aliens" is great', ["Aliens"]),
    ("Aliens is great", []),  # a one-word title counts only in quotes
    ("I loved Star Wars: The Empire Strikes Back", ["Star Wars: The Empire Strikes Back"]),
    ("Star Wars, then Star wars: the empire strikes back", ["Star Wars", "Star Wars: The Empire Strikes Back"]),
    ("The theater was heated, it's up to them", []),
    ('Like "Airplane!" and “Fargo”', ["Airplane!", "Fargo"]),
    ("A Toy\nstory split over lines", ["Toy Story"]),
])
def test_cited_titles(text, expected):
    assert cited_titles(text, CATALOGUE) == expected


def test_a_title_is_cited_quoted_with_its_year_or_capitalised():
    text = 'Written "toy story", toy story (1995), Toy Story or toy story'
    assert [text[a:b] for a, b, _ in title_mentions(text, CATALOGUE)] == ["toy story", "toy story", "Toy Story"]


def test_the_candidate_in_passing_cites_no_film():
    catalogue = [*CATALOGUE, "The Candidate"]
    text = 'Yes. Here the candidate is "Fargo", a mid nineties film. the candidate suits them.'
    assert cited_titles(text, catalogue) == ["Fargo"]
    assert grounding_rate([text], [{"Fargo"}], catalogue) == 1.0
    assert cited_titles('No. "The Candidate" (1972), The Candidate, the candidate (1972).', catalogue) == \
        ["The Candidate"]
    assert [start for start, _, _ in title_mentions('No. "the candidate", The Candidate.', catalogue)] == [5, 21]


def test_a_break_may_fall_inside_a_title_only_where_one_begins():
    catalogue = [*CATALOGUE, "Dr. Strangelove", "L.A. Confidential"]
    assert title_may_continue('They liked "Dr.', catalogue) and title_may_continue("They liked L.A.", catalogue)
    assert title_may_continue("They liked Star Wars:\n", catalogue)  # "Star Wars: The Empire Strikes Back"
    assert not title_may_continue("They liked Heat.", catalogue) and not title_may_continue("a.", catalogue)
    assert not title_may_continue("They liked Star Wars.", catalogue)


def test_cited_titles_empty_catalogue():
    assert cited_titles("Toy Story", []) == []
    assert cited_titles("Toy Story", ["Up"]) == []


def test_grounding_of_splits_citations():
    grounded, ungrounded = grounding_of('Since they loved "Toy Story 2" and "Heat"', {"toy story 2", "Fargo"},
                                        CATALOGUE)
    assert grounded == ["Toy Story 2"]
    assert ungrounded == ["Heat"]


def test_grounding_rate_hand_computed():
    texts = ['Since they loved "Toy Story 2" and "Heat", yes.',  # 1 grounded, 1 not
             "Nothing cited here, it is up to taste.",  # cites nothing: contributes nothing
             '"ALIENS" and Star Wars fans like this.']  # 2 grounded
    allowed = [{"Toy Story 2", "Fargo"}, {"Fargo"}, {"Aliens", "Star Wars"}]
    assert grounding_rate(texts, allowed, CATALOGUE) == pytest.approx(3 / 4)


def test_grounding_rate_nan_without_citations_and_length_check():
    assert math.isnan(grounding_rate(["no titles here"], [{"Fargo"}], CATALOGUE))
    with pytest.raises(ValueError):
        grounding_rate(["Fargo"], [], CATALOGUE)


@pytest.mark.parametrize(("text", "expected"), [
    ("Yes. The user likes sci-fi.", 1),
    ("  no. They dislike horror.", 0),
    ("\n\nYES, clearly.", 1),
    ("No one would dislike this film.", None),
    ("Yesterday they watched a comedy.", None),
    ("They like dramas.\nVerdict: Yes", 1),
    ("They like dramas.\nAnswer: No\n", 0),
    ("They love Pixar films, so the answer is yes.", 1),
    ("No. They hate musicals.\nFinal answer: **Yes**", 1),
    ("Yes. Looks good at first.\nVerdict: no.", 0),
    ("The history is mixed.\nNo", 0),
    ("The user might like it.", None),
    ("", None),
])
def test_stated_verdict(text, expected):
    assert stated_verdict(text) == expected


def test_verdict_agreement_hand_computed():
    texts = ["Yes. Great fit.", "No. Poor fit.", "Mixed.\nVerdict: Yes", "No verdict stated here", "No."]
    p_yes = [0.9, 0.7, 0.2, 0.99, 0.5]
    # stated: yes/0.9 agree, no/0.7 disagree, yes/0.2 disagree, no/0.5 agree (0.5 is not > 0.5).
    assert verdict_agreement(texts, p_yes) == pytest.approx(2 / 4)
    assert verdict_report(texts, p_yes) == {"agreement": pytest.approx(0.5), "stated_share": pytest.approx(4 / 5),
                                            "rows": 5}


def test_verdict_agreement_nan_and_length_check():
    assert math.isnan(verdict_agreement(["nothing stated"], [0.9]))
    with pytest.raises(ValueError):
        verdict_agreement(["Yes."], [0.9, 0.1])


def test_explanation_report():
    texts = ['Yes. I liked "Heat" a lot']
    report = explanation_report(texts, texts, [{"Heat"}], CATALOGUE, [0.8])
    # METEOR of 6 identical tokens: one chunk, penalty 0.5 * (1/6)^3.
    assert report == {"meteor": round(1 - 0.5 / 216, 4), "bleu4": 1.0, "rouge_l": 1.0, "grounding_rate": 1.0,
                      "verdict_agreement": 1.0, "stated_share": 1.0, "rows": 1}


def test_one_word_titles_count_only_in_quotes_or_with_their_year():
    catalogue = ["Heat", "Target", "Toy Story"]
    assert cited_titles('the target audience liked "Heat" and Toy Story', catalogue) == ["Heat", "Toy Story"]
    assert cited_titles("Target audiences liked Target (1985)", catalogue) == ["Target"]


LOOPING = "No. They did not enjoy it. They did not enjoy it. They did not enjoy it."  # "they did not" x3
TWICE = "Yes. They liked it a lot. They liked it a lot."  # every 3-gram at most twice


def test_loops_need_a_word_3gram_three_times():
    assert loops(LOOPING) and not loops(TWICE) and not loops("")
    assert loop_rate([LOOPING, TWICE, "Yes. Fine.", LOOPING]) == pytest.approx(2 / 4)


@pytest.mark.parametrize(("text", "tokens", "expected"), [
    ("Yes. It ends.", None, True),
    ('Yes. They liked "Heat."', None, True),
    ("No. A bracketed end (really!)", None, True),
    ("No. So in short,", None, False),
    ("Yes. It ends.", 160, False),  # stopped by the token cap
    ("Yes. It ends.", 40, True),
])
def test_complete_ends_a_sentence_before_the_cap(text, tokens, expected):
    assert complete(text, tokens, 160) is expected


def test_completion_rate_hand_computed():
    texts = ["Yes. Done.", "No. Cut off at", "Yes. Done too!"]
    assert completion_rate(texts) == pytest.approx(2 / 3)
    assert completion_rate(texts, [20, 20, 160], 160) == pytest.approx(1 / 3)


def test_claim_accuracy_counts_only_checked_claims():
    def claim(verdict):
        return Claim(0, 1, "genre", verdict, "")
    accuracy, checked = claim_accuracy([[claim("true"), claim("unchecked")], [], [claim("false"), claim("true")]])
    assert (accuracy, checked) == (pytest.approx(2 / 3), 3)
    assert math.isnan(claim_accuracy([[claim("unchecked")]])[0])



def test_falsehood_rate_counts_answers_not_claims():
    def claim(verdict):
        return Claim(0, 1, "genre", verdict, "")
    many_true = [claim("true")] * 9 + [claim("false")]  # claim accuracy 0.9 here, yet the answer states a falsehood
    assert falsehood_rate([many_true, [claim("true")], [claim("unchecked")], []]) == pytest.approx(1 / 4)
    assert states_falsehood(many_true) and not states_falsehood([claim("unchecked")])
    assert math.isnan(falsehood_rate([]))


@pytest.mark.parametrize(("sentence", "stance"), [
    ("Overall, the evidence points to a no.", 0),
    ("So I expect they will enjoy \"Heat\".", 1),
    ("On balance, it is unlikely to win them over.", 0),
    ("All told, they would probably pass on it.", 0),
    ("All told, they are likely to enjoy it.", 1),
    ("So, yes.", 1),
    ("They did not enjoy anything.", None),  # the past is no prediction
    ("They will like it, but they will not enjoy it.", None),  # both: no clear stance
])
def test_sentence_stance(sentence, stance):
    assert sentence_stance(sentence) == stance


def test_conclusion_report_hand_computed():
    texts = ["Yes. A comedy. Overall, the evidence points to a no.",  # disagrees
             "Yes. A comedy. So I expect they will enjoy it.",  # agrees
             "No. A comedy. They would probably pass on it.",  # agrees
             "No. A comedy. They did not enjoy it.",  # no clear stance
             "No. They would not enjoy it. So in short,"]  # the last complete sentence agrees
    assert conclusion_report(texts) == {"agreement": pytest.approx(3 / 4), "unclear_share": pytest.approx(1 / 5)}


def test_text_measures_together():
    report = text_measures([LOOPING, TWICE], [[], []], [30, 160], 160)
    assert report["loop_rate"] == 0.5 and report["completion_rate"] == 0.5 and report["claims_checked"] == 0
    assert math.isnan(report["claim_accuracy"])


def test_a_full_stop_inside_a_title_ends_no_sentence():
    text = 'Yes. It is close to "Judge Dredd". So I expect they will enjoy "The Island of Dr. Moreau".'
    assert last_sentence(text) == 'So I expect they will enjoy "The Island of Dr. Moreau".'
    assert conclusion_report([text]) == {"agreement": 1.0, "unclear_share": 0.0}


def test_a_quoted_name_that_is_no_catalogue_film_is_ungrounded_and_cites_nothing():
    catalogue = [*CATALOGUE, "Nikita (La Femme Nikita)"]
    text = ('Yes. They loved "Toy Story 7", "Sleepless in Selecion" and "Alien (1979)"; "Nikita" too, '
            'and "Fargo" twice: "Fargo". They said "wow". "Fargo," and "Heat..." too.')
    assert [name for _, _, name in unknown_titles(text, catalogue)] == ["Toy Story 7", "Sleepless in Selecion"]
    start, end, _ = unknown_titles(text, catalogue)[0]
    assert text[start:end] == "Toy Story 7"
    # not "Toy Story" inside "Toy Story 7"; "Nikita", quoted, is the short form of a catalogue title
    assert cited_titles(text, catalogue) == ["Alien", "Nikita (La Femme Nikita)", "Fargo"]
    grounded, ungrounded = grounding_of(text, {"Alien", "Fargo"}, catalogue)
    assert grounded == ["Alien", "Fargo"]
    assert ungrounded == ["Nikita (La Femme Nikita)", "Toy Story 7", "Sleepless in Selecion"]
    assert grounding_rate([text], [{"Alien", "Fargo", "Nikita (La Femme Nikita)"}], catalogue) == pytest.approx(3 / 5)


def test_a_short_form_cites_its_film_only_when_named_as_one():
    catalogue = [*CATALOGUE, "Nikita (La Femme Nikita)", "Independence Day (ID4)", "Seven (Se7en)"]
    text = ('Yes. They enjoyed "Independence Day" and Seven (1995), not "Nikita (La Femme Nikita)". '
            'Independence Day is a holiday; seven films were Nikita\'s.')
    assert [(text[a:b], title) for a, b, title in title_mentions(text, catalogue)] == [
        ("Independence Day", "Independence Day (ID4)"), ("Seven", "Seven (Se7en)"),
        ("Nikita (La Femme Nikita)", "Nikita (La Femme Nikita)")]


def test_claims_are_tallied_true_over_checked_per_kind():
    claims = [[Claim(0, 1, "reaction", "true", ""), Claim(2, 3, "reaction", "false", ""),
               Claim(4, 5, "era", "true", "")],
              [Claim(0, 1, "reaction", "unchecked", ""), Claim(2, 3, "genre", "false", "")]]
    assert claims_by_kind(claims) == {"era": [1, 1], "genre": [0, 1], "reaction": [1, 2]}
    assert text_measures(["Yes. Fine.", "No. Fine."], claims)["claims_by_kind"] == claims_by_kind(claims)


def test_glued_words_are_two_words_of_the_answer_run_together():
    text = ('No. They did not enjoy "As Good As It Gets", its nearest neighbour in their history. Although they '
            'enjoyed comedy films such as "Heat", its nearest neighbour in theirhistory, they will not enjoy '
            '"As Good As ItGets". Films suchas "Heat".')
    assert glued_words(text) == ["theirhistory", "ItGets", "suchas"]
    assert glued_words('Yes. They enjoyed "The Long Kiss Goodnight". Good night to "The Long Kiss Good Night".',
                       title_words(["The Long Kiss Goodnight (1996)"])) == []  # a title's own word
    assert glued_words("Yes. A comedy they enjoyed, with comedy films they enjoyed.") == []
    assert garble_rate([text, "Yes. Fine."]) == 0.5

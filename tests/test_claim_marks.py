"""Claim marks in the demo's reasoning: each checkable claim marked true, false or unchecked with the fact it
was checked against on hover, final at every streamed step, and safe for hostile text.

Fixture facts: "Laugh Track" (1997, Comedy) is the target; the prompt shows Alpha liked, Alpha Returns
disliked, The Garden disliked and Quiet Sea liked; "Old Reel" is not in that history.
"""

from __future__ import annotations

import html
import re

import numpy as np
import pytest

from demo import handlers
from thinkrec.claims import ClaimChecker
from thinkrec.explorer import Case, Explanation

LAUGH_TRACK = 4
CASE = Case(0, LAUGH_TRACK, np.array([0, 1, 2, 3]), np.array([1, 0, 0, 1]))
TAG = re.compile(r"<[^>]*>")


class FakeStream:
    """Text pieces as a model would stream them."""

    p_yes = 0.3

    def __init__(self, pieces: list[str]):
        self.pieces, self.new_tokens = pieces, len(pieces)

    def __iter__(self):
        return iter(self.pieces)


def run_for(explorer, pieces: list[str] = ()) -> Explanation:
    titles = explorer.data.items["title"].tolist()
    return Explanation(system="thinkrec", prompt="", truth=False, allowed={titles[i] for i in (0, 1, 2, 3, 4)},
                       stream=FakeStream(list(pieces)), target=titles[LAUGH_TRACK], case=CASE)


def marked(explorer, text: str) -> tuple[str, list]:
    _, claims, page = handlers.marked_answer(explorer, text, run_for(explorer))
    return page, claims


def test_claims_are_marked_true_false_and_unchecked_with_their_fact(tiny_explorer):
    text = 'No. "Laugh Track" (1997) is an early nineties comedy. They enjoyed "Old Reel".'
    page, claims = marked(tiny_explorer, text)
    assert [(c.kind, c.verdict) for c in claims] == [("year", "true"), ("era", "false"), ("genre", "true"),
                                                     ("reaction", "unchecked")]
    assert ('&quot;<span class="claim claim-true" title="Year claim, true. Checked against: &quot;Laugh Track&quot; '
            '(1997)"><mark class="cited-target">Laugh Track 🎯 target</mark>&quot; (1997)<sup class="claim-sign">✓'
            '</sup></span>') in page
    assert ('<span class="claim claim-false" title="Era claim, false. Checked against: &quot;Laugh Track&quot; '
            '(1997): late nineties">early nineties<sup class="claim-sign">✗</sup></span>') in page
    assert ('<span class="claim claim-unchecked" title="Reaction claim, unchecked: &quot;Old Reel&quot; is not in '
            'the history the prompt shows (said: liked)"><mark class="cited-missing">Old Reel ✗</mark>'
            '<sup class="claim-sign">?</sup></span>') in page
    signed = text.replace('Track"', 'Track 🎯 target"').replace("(1997)", "(1997)✓").replace("nineties", "nineties✗")
    assert html.unescape(TAG.sub("", page)) == signed.replace("comedy", "comedy✓").replace("Reel", "Reel ✗?")
    assert handlers.claim_counts(claims) == "claims checked: 2 true, 1 false, 1 unchecked"


def test_hostile_text_and_titles_are_escaped_and_still_marked(tiny_explorer):
    tiny_explorer.data.items.at[2, "title"] = 'The <i>Garden</i> & "Co"'
    tiny_explorer.claim_checker = ClaimChecker(tiny_explorer.data, tiny_explorer.config)
    text = ('No. <script>alert(1)</script> They did not enjoy "The <i>Garden</i> & "Co"". **It** is a [comedy]'
            '(javascript:alert(1)) <img src=x onerror=alert(1)>. "Laugh Track" is a late nineties comedy.')
    page, claims = marked(tiny_explorer, text)
    assert [(c.kind, c.verdict) for c in claims] == [("reaction", "true"), ("era", "true"), ("genre", "true")]
    assert "<script>" not in page and "<img" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "**It** is a [comedy](javascript:alert(1))" in page
    assert ('<span class="claim claim-true" title="Reaction claim, true. Checked against: history: &quot;The '
            '&lt;i&gt;Garden&lt;/i&gt; &amp; &quot;Co&quot;&quot; disliked"><mark class="cited-ok">The &lt;i&gt;'
            'Garden&lt;/i&gt; &amp; &quot;Co&quot; ✓</mark>') in page
    assert set(TAG.findall(page)) <= {*(f'<span class="claim claim-true" title="{html.escape(handlers.claim_note(c))}">'
                                        for c in claims), '<mark class="cited-ok">', '<mark class="cited-target">',
                                      '</mark>', '<sup class="claim-sign">', '</sup>', '</span>'}


def test_marks_nest_and_one_crossing_the_mark_around_it_is_cut_there():
    spans = [(0, 3, "<a>", "</a>"), (2, 5, "<b>", "</b>"), (4, 6, "<c>", "</c>"), (4, 6, "<d>", "</d>")]
    assert handlers.marked_html("a<cd&f", spans) == "<a>a&lt;<b>c</b></a>d<c><d>&amp;f</d></c>"


def test_the_candidate_in_passing_is_not_marked(tiny_explorer):
    tiny_explorer.data.items.at[5, "title"] = "The Candidate"
    tiny_explorer.claim_checker = ClaimChecker(tiny_explorer.data, tiny_explorer.config)
    page, claims = marked(tiny_explorer, 'Yes. Here the candidate is "Laugh Track", a late nineties comedy film.')
    assert "the candidate is" in page and page.count("<mark") == 1 and len(claims) == 2
    assert handlers.citation_counts(tiny_explorer.citations("Here the candidate is.", run_for(tiny_explorer))) \
        .startswith("cited titles: 0 found in the history the prompt showed, 0 not found")


STREAMED = ('No. "Laugh Track" (1997) is an early nineties comedy. It is a comedy like "Quiet Sea" (the films '
            'named with "It" are no claims about the target). They did not enjoy "Alpha" and "The Garden".\n'
            'They enjoyed "Old Reel", which is a crowd favourite. Their profile leans towards drama. So no')


@pytest.mark.parametrize("size", [1, 4])
def test_streamed_marks_are_final_at_every_step(tiny_explorer, size):
    """(Marks drawn on the whole text so far fail this: a title is marked before its year arrives, and "It is
    a comedy" is marked before "Quiet Sea" makes "It" no longer the target.)"""
    pieces = [STREAMED[i:i + size] for i in range(0, len(STREAMED), size)]
    steps = [page for _, page in handlers.stream_explanation(tiny_explorer, run_for(tiny_explorer, pieces))]
    final, footer = steps[-1].split("<br><small>")
    assert final == marked(tiny_explorer, STREAMED)[0] and "claims checked: 3 true, 2 false, 2 unchecked" in footer
    shown = []
    for page in steps[:-1]:
        closed = [m.end() for m in re.finditer("</span>|</mark>", page)]
        settled = page[:closed[-1]] if closed else ""
        assert final.startswith(settled) and "<" not in page[len(settled):]  # marks so far are the final ones
        assert html.unescape(TAG.sub("", page[len(settled):])) in STREAMED  # the rest is plain text
        shown.append(settled.count('class="claim '))
    assert shown == sorted(shown) and shown[0] == 0 < shown[len(shown) // 2]  # marks arrive while it streams
    assert shown[-1] == final.count('class="claim ')

"""A sentence-level guard for greedy decoding: no film of the user's history is cited twice in one answer.

A small model that has learnt the teacher's argument ("they enjoyed "A" and "B", its nearest neighbours in
their history") tends to say it again in the next sentence, or to concede the same film the other way
("Although they did not enjoy "A" ..."), which is false. The teacher's answers never cite a history film
twice; without this guard 22 % of ThinkRec-fused's 500 reference answers did, and 35 % of ThinkRec-global's.
The token-level no-repeat rule cannot stop it: a restatement changes a word or two, and inside the quotes the
rule sleeps on purpose.

So greedy decoding (``lookup_decoding.greedy_lookup_decode``) holds each sentence back until it ends; when
a sentence closes a quoted title that an earlier sentence already cited (the answer's first quoted title,
the film being judged, excepted), the decoder goes back to the sentence's start and refuses the token the
sentence began with, so the model says something else there. After ``RETRIES`` refusals at one place the
sentence stays as written: the guard bounds the extra passes and never blocks an answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from thinkrec.llm.quotes import quote_state, quote_tokens

RETRIES = 6  # first tokens refused at one sentence start before its sentence is let through as it is
SENTENCE_END = re.compile(r"[.!?]$")  # how a token that ends a sentence ends (outside a quoted title)
QUOTED = re.compile(r'"([^"]+)"')  # a closed double-quoted span: a title in ThinkRec's answers


@lru_cache(maxsize=4)
def sentence_end_tokens(tokenizer) -> frozenset[int]:
    """The tokens whose text ends with a full stop, a question mark or an exclamation mark."""
    return frozenset(token_id for token, token_id in tokenizer.get_vocab().items() if SENTENCE_END.search(token))


def title_key(title: str) -> str:
    """A quoted title as the guard compares it: case and spacing aside."""
    return " ".join(title.split()).casefold()


class CitationGuard:
    """Decides where a sentence ends and whether it cites again a film cited earlier in the answer.

    ``decode`` turns token ids into text; ``quotes`` are the tokens that open or close a quoted span and
    ``sentence_ends`` those that end a sentence outside one."""

    def __init__(self, decode: Callable[[list[int]], str], quotes: frozenset[int], sentence_ends: frozenset[int]):
        self.decode, self.quotes, self.sentence_ends = decode, quotes, sentence_ends

    @classmethod
    def for_tokenizer(cls, tokenizer) -> CitationGuard:
        """The guard for ``tokenizer``'s vocabulary."""
        return cls(lambda ids: tokenizer.decode(ids, skip_special_tokens=True), quote_tokens(tokenizer),
                   sentence_end_tokens(tokenizer))

    def ends_sentence(self, answer: list[int]) -> bool:
        """Whether ``answer``'s last token ends a sentence (a full stop inside a quoted title does not)."""
        return bool(answer) and answer[-1] in self.sentence_ends and not quote_state(answer, self.quotes)[0]

    def cut_at_sentence_end(self, answer: list[int], draft: list[int]) -> list[int]:
        """``draft`` up to and including the first token that ends a sentence after ``answer``: a group of
        tokens accepted together never runs past a sentence's end, where the guard may have to come back."""
        state = quote_state(answer, self.quotes)
        for length, token in enumerate(draft, start=1):
            state = quote_state([token], self.quotes, state)
            if token in self.sentence_ends and not state[0]:
                return draft[:length]
        return draft

    def restates(self, answer: list[int], sentence_start: int) -> bool:
        """Whether the sentence from ``sentence_start`` closes a quoted title cited before it, in an earlier
        sentence or earlier in itself (the answer's first quoted title excepted: it names the film being judged)."""
        sentence = answer[sentence_start:]
        if not any(token in self.quotes for token in sentence):
            return False
        earlier = [title_key(title) for title in QUOTED.findall(self.decode(answer[:sentence_start]))]
        current = [title_key(title) for title in QUOTED.findall(self.decode(sentence))]
        if not current:
            return False
        judged, cited = (earlier or current)[0], set(earlier)
        for title in current:
            if title in cited and title != judged:
                return True
            cited.add(title)
        return False

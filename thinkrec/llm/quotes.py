"""Double-quoted spans in token ids: ThinkRec's answers put every film title between double quotes, so the
decoding rules (``lookup_decoding``) and the citation guard (``citation_guard``) both need to know whether a
token falls inside one."""

from __future__ import annotations

from functools import lru_cache

QUOTE = '"'  # what opens and closes a title in ThinkRec's answers


@lru_cache(maxsize=4)
def quote_tokens(tokenizer) -> frozenset[int]:
    """The tokens that open or close a double-quoted span: those whose text holds an odd number of ``QUOTE``
    (' "', '".', '",' in a byte-level BPE vocabulary)."""
    return frozenset(token_id for token, token_id in tokenizer.get_vocab().items() if token.count(QUOTE) % 2)


def quote_state(tokens: list[int], quotes: frozenset[int], state: tuple[bool, int] = (False, 0)) -> tuple[bool, int]:
    """(inside a double-quoted span, tokens since it opened) after ``tokens``, continuing from ``state``
    (``quotes``: the tokens that open or close a span)."""
    inside, since = state
    for token in tokens:
        if token in quotes:
            inside, since = not inside, 0
        elif inside:
            since += 1
    return inside, since

"""Guesses for lookup decoding from the phrases the student was taught: the teacher's training traces.

A trained ThinkRec answers in the teacher's frames ("The clearest signal is that they", "the other signals
weigh more. Overall, the evidence points to a") between the lines it copies from its prompt. Prompt lookup
(``lookup_decoding.draft_from_history``) guesses the copied lines, but the frames are in no prompt, so there
decoding fell back to one token per forward pass. A phrasebook counts, over the traces, which token follows
each n-gram (n = 2..4) and guesses the likeliest chain of them, the longest known n-gram deciding each token.
On ThinkRec-fused's first 200 reference answers that raises the tokens per forward pass from 1.83 to 4.1
(counted from the stored answers). A guess only chooses what each pass checks: the answer stays greedy
decoding's, token for token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

LONGEST_CONTEXT = 4  # tokens a guess looks back at most
SHORTEST_CONTEXT = 2  # one shared token predicts the next too poorly


class Phrasebook:
    """The likeliest next token after every n-gram of a corpus (n = ``SHORTEST_CONTEXT``..``LONGEST_CONTEXT``)."""

    def __init__(self, next_token: dict[tuple[int, ...], int], end_token: int):
        self.next_token, self.end_token = next_token, end_token

    @classmethod
    def from_token_ids(cls, sequences: Iterable[list[int]], end_token: int) -> Phrasebook:
        """Count the continuations of every n-gram of ``sequences``, each closed by ``end_token``; ties go to the
        continuation seen first."""
        counts: dict[tuple[int, ...], dict[int, int]] = {}
        for sequence in sequences:
            tokens = [*sequence, end_token]
            for n in range(SHORTEST_CONTEXT, LONGEST_CONTEXT + 1):
                for end in range(n, len(tokens)):
                    following = counts.setdefault(tuple(tokens[end - n:end]), {})
                    following[tokens[end]] = following.get(tokens[end], 0) + 1
        return cls({context: max(following, key=following.get) for context, following in counts.items()},
                   end_token)

    @classmethod
    def from_texts(cls, tokenizer, texts: list[str]) -> Phrasebook:
        """The phrasebook of ``texts`` as ``tokenizer`` writes them (answers end with its end token)."""
        return cls.from_token_ids(tokenizer(texts, add_special_tokens=False).input_ids, tokenizer.eos_token_id)

    def __len__(self) -> int:
        return len(self.next_token)

    def digest(self) -> str:
        """A fingerprint of every guess: the forward passes it chooses may round apart in bfloat16, so a job that
        stores decoded text records the phrasebook it decoded with."""
        return hashlib.sha256(repr((self.end_token, sorted(self.next_token.items()))).encode()).hexdigest()

    def draft(self, history: list[int], max_tokens: int,
              trim: Callable[[list[int]], list[int]] = lambda draft: draft) -> list[int]:
        """Up to ``max_tokens`` likely next tokens after ``history`` (stopping at the end token), cut by ``trim``
        where decoding would refuse them."""
        guess: list[int] = []
        context = history[-LONGEST_CONTEXT:]
        while len(guess) < max_tokens:
            token = next((self.next_token[key] for n in range(min(LONGEST_CONTEXT, len(context)),
                                                              SHORTEST_CONTEXT - 1, -1)
                          if (key := tuple(context[-n:])) in self.next_token), None)
            if token is None:
                break
            guess.append(token)
            if token == self.end_token:
                break
            context = [*context[1 - LONGEST_CONTEXT:], token]
        return trim(guess) if guess else guess

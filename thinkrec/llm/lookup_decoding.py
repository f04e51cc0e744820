"""Greedy decoding sped up by prompt lookup: the same text as plain greedy decoding, in fewer passes.

On a CPU, one decoding step of a small LM costs about as much for a handful of tokens as for one: the
time goes into reading the weights, not into arithmetic. Reasoning about a recommendation quotes its
prompt a lot (titles, genres, keywords), so the continuation of the last few tokens can often be
guessed by finding the same n-gram earlier in the prompt or the answer. Each step feeds the next token
plus such a guess (the *draft*) and keeps the longest prefix of the draft that greedy decoding would
have produced anyway; the cache is cut back past the rest. The text is the same as plain greedy
decoding's (up to floating-point ties); only the number of forward passes drops (by a quarter to a
half on ThinkRec's answers: more when the answer quotes the prompt, less when it paraphrases).

A small model decoding greedily loops ("It's a film that has been ... It's a film that has been");
``no_repeat_ngram`` bars any token that would repeat an n-gram of the answer itself. Unlike the
usual rule, quoting the prompt (titles, genres) stays allowed, and with ``quotes`` (``quote_tokens``) the
rule sleeps inside a double-quoted span, so that a title the answer names a second time comes out whole,
not as "As Good As ItGets" or "Sense and Sensible". A ``CitationGuard`` goes further, a sentence at a time:
it takes back a sentence that cites a film the answer cited already and has the model write it otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import torch

from thinkrec.llm.citation_guard import RETRIES, CitationGuard
from thinkrec.llm.decode_steps import decoding_steps
from thinkrec.llm.phrasebook import Phrasebook
from thinkrec.llm.quotes import quote_state, quote_tokens

DRAFT_TOKENS = 8  # longest guess checked per step
LONGEST_NGRAM = 3  # n-grams tried, longest first, to find where the answer quotes earlier text
SHORTEST_NGRAM = 2  # a single shared token predicts the continuation too poorly to pay for checking it
PLAIN_STEPS = 2  # the first tokens (the verdict and its full stop) are decoded without a draft
OCCURRENCES_TRIED = 16  # earlier occurrences of one n-gram looked at, latest first
SPACE_MARK = "Ġ"  # how a byte-level BPE vocabulary writes the space that opens a word
QUOTED_TOKENS_SPARED = 32  # the catalogue's longest title takes 25 tokens: a quote still open after 32 is no title


def draft_from_history(history: list[int], max_tokens: int, longest_ngram: int = LONGEST_NGRAM,
                       trim: Callable[[list[int]], list[int]] = lambda draft: draft,
                       shortest_ngram: int = SHORTEST_NGRAM) -> list[int]:
    """The tokens that followed the latest earlier occurrence of the history's final n-gram
    (n = longest..shortest).

    ``trim`` cuts a candidate where decoding would refuse it; the first non-empty trimmed candidate wins."""
    if max_tokens <= 0:
        return []
    for n in range(min(longest_ngram, len(history) - 1), shortest_ngram - 1, -1):
        tail, tried = history[-n:], 0
        for start in range(len(history) - n - 1, -1, -1):
            if history[start:start + n] == tail:
                draft = trim(history[start + n:start + n + max_tokens])
                if draft:
                    return draft
                tried += 1
                if tried == OCCURRENCES_TRIED:
                    break
    return []


def repeated_ngram_bans(answer: list[int], n: int) -> list[int]:
    """Tokens that would complete an n-gram the answer already contains (none when ``n`` < 1)."""
    if n < 1 or len(answer) < n - 1:
        return []
    prefix = answer[len(answer) - n + 1:]
    return [answer[i + n - 1] for i in range(len(answer) - n + 1) if answer[i:i + n - 1] == prefix]


def allowed_prefix(draft: list[int], answer: list[int], n: int, answer_ngrams: set[tuple[int, ...]] | None = None,
                   quotes: frozenset[int] = frozenset()) -> list[int]:
    """The longest start of ``draft`` that repeats no n-gram of ``answer`` + itself (``answer_ngrams``: the
    answer's n-grams, when the caller has them already), a token inside a double-quoted span (``quotes``: the
    tokens that open or close one) excepted."""
    seen = set(answer_ngrams) if answer_ngrams is not None else ngrams(answer, n)
    text = answer[len(answer) - n + 1:] if n > 1 else []
    state = quote_state(answer, quotes)
    for length, token in enumerate(draft):
        text = (text + [token])[-n:]
        if len(text) == n:
            if tuple(text) in seen and not spared(state):
                return draft[:length]
            seen.add(tuple(text))
        state = quote_state([token], quotes, state)
    return draft


def spared(state: tuple[bool, int]) -> bool:
    """Whether the next token is spared the no-repeat rule: it falls inside a quote short enough to be a title."""
    inside, since = state
    return inside and since < QUOTED_TOKENS_SPARED


def ngrams(tokens: list[int], n: int) -> set[tuple[int, ...]]:
    """Every n-gram of ``tokens``."""
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


@lru_cache(maxsize=4)
def spelling_variants(tokenizer) -> dict[int, tuple[int, ...]]:
    """Each token that is a word after a space ("Ġhistory") and the token of the same word run on ("history"),
    mapped to each other: a word the no-repeat rule bars, barred in both spellings, cannot come back glued to the
    word before it ("in theirhistory")."""
    vocab = tokenizer.get_vocab()
    variants: dict[int, list[int]] = {}
    for token, spaced in vocab.items():
        run_on = vocab.get(token[1:]) if token.startswith(SPACE_MARK) and len(token) > 1 else None
        if run_on is not None:
            variants.setdefault(spaced, []).append(run_on)
            variants.setdefault(run_on, []).append(spaced)
    return {token: tuple(others) for token, others in variants.items()}


class AnswerRules:
    """What greedy decoding may not choose next, given the answer so far. With ``spellings``
    (``spelling_variants``), a token the no-repeat rule bars is barred in its other spelling too; with
    ``quotes`` (``quote_tokens``), the no-repeat rule is off inside a double-quoted span."""

    def __init__(self, eos_token_id: int, min_new_tokens: int = 0, no_repeat_ngram: int = 0,
                 spellings: Mapping[int, tuple[int, ...]] | None = None, quotes: frozenset[int] = frozenset()):
        self.eos_token_id, self.min_new_tokens, self.no_repeat_ngram = eos_token_id, min_new_tokens, no_repeat_ngram
        self.spellings, self.quotes = spellings or {}, quotes

    @classmethod
    def from_settings(cls, tokenizer, settings) -> AnswerRules:
        """The rules of ``GenerationSettings`` for ``tokenizer``."""
        spellings = spelling_variants(tokenizer) if settings.bar_spellings and settings.no_repeat_ngram else None
        quotes = quote_tokens(tokenizer) if settings.spare_quotes and settings.no_repeat_ngram else frozenset()
        return cls(tokenizer.eos_token_id, settings.min_new_tokens, settings.no_repeat_ngram, spellings, quotes)

    def repeat_bans(self, answer: list[int]) -> list[int]:
        """The tokens the no-repeat rule bars after ``answer``."""
        if spared(quote_state(answer, self.quotes)):
            return []
        barred = repeated_ngram_bans(answer, self.no_repeat_ngram)
        return barred + [other for token in barred for other in self.spellings.get(token, ())]

    def choose(self, logits: torch.Tensor, answer: list[int], refused: Sequence[int] = ()) -> int:
        """The best token after ``answer`` that the rules allow, ``refused`` tokens aside."""
        barred = self.repeat_bans(answer) + list(refused)
        if len(answer) < self.min_new_tokens:
            barred.append(self.eos_token_id)
        if barred:
            logits = logits.clone()
            logits[barred] = float("-inf")
        return int(logits.argmax())

    def trimmer(self, answer: list[int]) -> Callable[[list[int]], list[int]]:
        """A function cutting a draft where the rules would refuse it after ``answer``."""
        if not self.no_repeat_ngram:
            return lambda draft: draft
        seen = ngrams(answer, self.no_repeat_ngram)
        return lambda draft: allowed_prefix(draft, answer, self.no_repeat_ngram, seen, self.quotes)


def next_draft(history: list[int], room: int, trim: Callable[[list[int]], list[int]],
               phrasebook: Phrasebook | None) -> list[int]:
    """The prompt's continuation of ``history``'s last n-gram, else the phrasebook's guess (``room`` tokens at most)."""
    draft = draft_from_history(history, room, trim=trim)
    return draft if draft or phrasebook is None else phrasebook.draft(history, room, trim)


@dataclass
class DecodeCounts:
    """What one decoding took: forward passes after the prompt's, and sentences taken back by the guard."""

    passes: int = 0
    retries: int = 0


@dataclass
class SentenceStart:
    """Where the sentence being written began: its position in the answer, the logits there, and the first
    tokens the citation guard has refused there."""

    position: int
    logits: torch.Tensor
    refused: list[int] = field(default_factory=list)


@torch.inference_mode()
def greedy_lookup_decode(backbone, inputs_embeds: torch.Tensor, prompt_ids: list[int], max_new_tokens: int,
                         rules: AnswerRules, on_first_logits: Callable[[torch.Tensor], None] = lambda logits: None,
                         draft_tokens: int | None = None, phrasebook: Phrasebook | None = None,
                         guard: CitationGuard | None = None, counts: DecodeCounts | None = None) -> Iterator[list[int]]:
    """Decode greedily from one prompt (``inputs_embeds``: 1 x T x d, unpadded) under ``rules``, yielding each
    group of accepted tokens as soon as it is known (for streaming); ``on_first_logits`` receives the
    logits at the answer position, before the first token is chosen. Where the prompt and the answer so far
    suggest no draft, ``phrasebook`` guesses one. With a ``guard`` the answer comes out a whole sentence at a
    time, each sentence rewritten where it cites a film again (``citation_guard``). ``counts``, when given,
    receives the passes and retries taken."""
    draft_tokens = DRAFT_TOKENS if draft_tokens is None else draft_tokens
    counts = DecodeCounts() if counts is None else counts
    if inputs_embeds.shape[0] != 1:
        raise ValueError(f"lookup decoding serves one prompt at a time, got a batch of {inputs_embeds.shape[0]}")
    passes = decoding_steps(backbone, inputs_embeds.shape[1] + max_new_tokens + draft_tokens + 1)
    logits = passes.start(inputs_embeds)
    on_first_logits(logits)
    answer: list[int] = []
    cached = 0  # answer tokens in the cache (behind the prompt's)
    sentence = SentenceStart(0, logits)
    while True:
        refused = sentence.refused if len(answer) == sentence.position else ()
        accepted = [rules.choose(logits, answer, refused)]
        ends = accepted[0] == rules.eos_token_id or len(answer) + 1 >= max_new_tokens
        # The first words go out after plain steps (a stream shows whole words); later steps also check a draft,
        # which stops where a sentence ends when a guard may have to come back to it.
        room = min(draft_tokens, max_new_tokens - len(answer) - 1) if len(answer) >= PLAIN_STEPS else 0
        if guard is not None and guard.ends_sentence(answer + accepted):
            room = 0
        draft = [] if ends else next_draft(prompt_ids + answer + accepted, room,
                                           draft_trimmer(rules, guard, answer + accepted), phrasebook)
        if draft:
            step = passes.step(accepted + draft)
            counts.passes += 1
            # Row j of the step's logits follows answer + accepted + draft[:j].
            while len(accepted) <= len(draft) and accepted[-1] != rules.eos_token_id \
                    and rules.choose(step[len(accepted) - 1], answer + accepted) == draft[len(accepted) - 1]:
                accepted.append(draft[len(accepted) - 1])
            passes.drop(len(draft) + 1 - len(accepted))
            logits, cached = step[len(accepted) - 1], len(answer) + len(accepted)
        answer += accepted
        finished = accepted[-1] == rules.eos_token_id or len(answer) >= max_new_tokens
        if guard is None:
            yield accepted  # before the pass that follows it, when there was no draft to check
        elif guard.restates(answer, sentence.position) and len(sentence.refused) < RETRIES:
            passes.drop(cached - sentence.position)
            sentence.refused.append(answer[sentence.position])
            del answer[sentence.position:]
            logits, cached = sentence.logits, sentence.position
            counts.retries += 1
            continue
        elif finished or guard.ends_sentence(answer):
            yield answer[sentence.position:]
        if finished:
            return
        if not draft:
            logits, cached = passes.step(accepted)[0], len(answer)
            counts.passes += 1
        if guard is not None and guard.ends_sentence(answer):
            sentence = SentenceStart(len(answer), logits)


def draft_trimmer(rules: AnswerRules, guard: CitationGuard | None,
                  answer: list[int]) -> Callable[[list[int]], list[int]]:
    """A function cutting a draft after ``answer`` where the rules refuse it and, with a guard, where a sentence
    ends."""
    trim = rules.trimmer(answer)
    return trim if guard is None else lambda draft: guard.cut_at_sentence_end(answer, trim(draft))

"""The citation guard: a sentence that cites a history film the answer cited already is taken back and rewritten."""

from types import SimpleNamespace

import torch

from thinkrec.llm.citation_guard import RETRIES, CitationGuard
from thinkrec.llm.lookup_decoding import AnswerRules, DecodeCounts, greedy_lookup_decode

VOCABULARY = {"<eos>": 0, 'Ġ"': 1, '".': 2, "ĠYes": 3, "ĠT": 4, "ĠA": 5, "ĠB": 6, "ĠThey": 7, "Ġenjoyed": 8,
              "ĠAlso": 9, "ĠBesides": 10, ".": 11, "ĠMrs.": 12, "ĠSo": 13, "ĠThen": 14, "ĠStill": 15, "ĠNow": 16,
              "ĠAnd": 17}
EOS, OPEN, CLOSE, YES, T, A, B, THEY, ENJOYED, ALSO, BESIDES, STOP, MRS, SO, *OPENERS = range(18)


class Words:
    """A tokenizer of the words above: byte-level marks for spaces, quotes that open and close titles."""

    def get_vocab(self) -> dict[str, int]:
        return VOCABULARY

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        words = {token_id: token for token, token_id in VOCABULARY.items()}
        return "".join(words[i] for i in ids if i != EOS or not skip_special_tokens).replace("Ġ", " ")


GUARD = CitationGuard.for_tokenizer(Words())


def test_a_sentence_ends_at_a_full_stop_outside_a_title():
    assert GUARD.ends_sentence([YES, STOP]) and GUARD.ends_sentence([THEY, OPEN, A, CLOSE])
    assert not GUARD.ends_sentence([THEY, OPEN, MRS]) and not GUARD.ends_sentence([THEY, ENJOYED])
    assert GUARD.cut_at_sentence_end([THEY], [OPEN, MRS, A, CLOSE, ALSO, OPEN]) == [OPEN, MRS, A, CLOSE]


def test_citing_a_history_film_again_is_a_restatement_naming_the_judged_film_again_is_not():
    judged_then_a = [YES, STOP, OPEN, T, CLOSE, THEY, ENJOYED, OPEN, A, CLOSE]
    assert GUARD.restates(judged_then_a + [ALSO, OPEN, A, CLOSE], len(judged_then_a))
    assert not GUARD.restates(judged_then_a + [ALSO, OPEN, B, CLOSE], len(judged_then_a))
    assert not GUARD.restates(judged_then_a + [SO, OPEN, T, CLOSE], len(judged_then_a))
    assert not GUARD.restates(judged_then_a + [ALSO, OPEN, A], len(judged_then_a))  # the title is not closed yet
    assert GUARD.restates([OPEN, T, CLOSE, THEY, OPEN, B, CLOSE, OPEN, B, CLOSE], 3)  # twice in one sentence


class ScriptedLM(torch.nn.Module):
    """A causal LM that writes sentence after sentence from a script: sentence k is the first of ``script[k]``'s
    alternatives whose start matches what is written of it, the alternatives' first tokens ranked in order.
    Its cache is the list of answer tokens fed so far."""

    def __init__(self, script: list[list[list[int]]]):
        super().__init__()
        self.script = script

    def preferences(self, answer: list[int]) -> list[int]:
        ends = [i for i in range(len(answer)) if GUARD.ends_sentence(answer[:i + 1])]
        index, sentence = len(ends), answer[ends[-1] + 1:] if ends else answer
        alternatives = self.script[index] if index < len(self.script) else [[EOS]]
        if not sentence:
            return [alternative[0] for alternative in alternatives]
        matching = [a for a in alternatives if a[:len(sentence)] == sentence and len(a) > len(sentence)]
        return [matching[0][len(sentence)]] if matching else [EOS]  # off the script (a draft guessed wrong)

    def logits_after(self, answer: list[int]) -> torch.Tensor:
        logits = torch.zeros(len(VOCABULARY))
        for rank, token in enumerate(self.preferences(answer)):
            logits[token] = 10.0 - rank
        return logits

    def forward(self, inputs_embeds=None, input_ids=None, cache=None, **kwargs):
        if cache is None:
            cache = SimpleNamespace(tokens=[])
            cache.crop = lambda count: cache.tokens.__delitem__(slice(count, None))
            return SimpleNamespace(logits=self.logits_after([])[None, None], cache=cache)
        rows = []
        for token in input_ids[0].tolist():
            cache.tokens.append(token)
            rows.append(self.logits_after(cache.tokens))
        return SimpleNamespace(logits=torch.stack(rows)[None], cache=cache)


def decode(script, guard, max_new_tokens=40):
    counts = DecodeCounts()
    groups = list(greedy_lookup_decode(ScriptedLM(script), torch.zeros(1, 3, 4), [EOS] * 3, max_new_tokens,
                                       AnswerRules(EOS), guard=guard, counts=counts))
    return groups, counts


OPENING = [[[YES, STOP]], [[OPEN, T, CLOSE]], [[THEY, ENJOYED, OPEN, A, CLOSE]]]


def test_the_guard_rewrites_a_sentence_that_cites_a_film_again_and_streams_whole_sentences():
    script = OPENING + [[[THEY, ENJOYED, OPEN, A, CLOSE], [ALSO, OPEN, A, CLOSE], [BESIDES, OPEN, B, CLOSE]]]
    free, _ = decode(script, None)
    guarded, counts = decode(script, GUARD)
    assert sum(free, []) == [YES, STOP, OPEN, T, CLOSE] + [THEY, ENJOYED, OPEN, A, CLOSE] * 2 + [EOS]
    assert guarded == [[YES, STOP], [OPEN, T, CLOSE], [THEY, ENJOYED, OPEN, A, CLOSE], [BESIDES, OPEN, B, CLOSE],
                       [EOS]]
    assert counts.retries == 2  # "They enjoyed "A"." and "Also "A"." taken back


def test_after_its_retries_the_guard_lets_the_sentence_through():
    restating = [[first, OPEN, A, CLOSE] for first in (THEY, ALSO, BESIDES, SO, *OPENERS)][:RETRIES + 1]
    assert len(restating) == RETRIES + 1  # the vocabulary has openers enough
    guarded, counts = decode(OPENING + [restating], GUARD)
    assert guarded[3] == restating[-1] and counts.retries == RETRIES


def test_the_guard_keeps_the_token_cap():
    script = OPENING + [[[THEY, ENJOYED, OPEN, A, CLOSE], [BESIDES, ENJOYED, OPEN, B, CLOSE]]]
    guarded, counts = decode(script, GUARD, max_new_tokens=15)  # the restating sentence would end at the cap
    assert guarded[-1] == [BESIDES, ENJOYED, OPEN, B, CLOSE] and len(sum(guarded, [])) == 15 and counts.retries == 1
    cut, _ = decode(script, GUARD, max_new_tokens=13)
    assert cut[-1] == [THEY, ENJOYED, OPEN] and len(sum(cut, [])) == 13  # cut inside a title: nothing restated

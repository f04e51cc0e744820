"""Prompt-lookup greedy decoding: the same tokens as plain greedy decoding, in fewer forward passes."""

import pytest
import torch

from thinkrec.llm.generate import AnswerNgramBan
from thinkrec.llm.lookup_decoding import (
    QUOTED_TOKENS_SPARED,
    AnswerRules,
    allowed_prefix,
    draft_from_history,
    greedy_lookup_decode,
    repeated_ngram_bans,
    spelling_variants,
)
from thinkrec.llm.quotes import quote_state, quote_tokens


def test_the_draft_continues_the_latest_earlier_occurrence_of_the_final_ngram():
    history = [1, 2, 3, 9, 9, 1, 2, 3, 7, 8, 4, 2, 3]
    assert draft_from_history(history, 3) == [7, 8, 4]  # "2 3" last seen before position 6
    assert draft_from_history(history, 1) == [7]
    assert draft_from_history([5, 6, 7, 6], 2) == []  # a shared single token is not enough
    assert draft_from_history([5, 6, 7, 6], 2, shortest_ngram=1) == [7, 6]
    assert draft_from_history([5, 6, 7], 4) == []  # nothing repeats
    assert draft_from_history([4, 4, 4], 4) == [4]
    assert draft_from_history(history, 0) == []
    assert draft_from_history(history, 3, trim=lambda d: d[:1] if d[0] != 7 else []) == [9]  # next occurrence


def test_ngram_bans_name_the_tokens_that_would_repeat_an_ngram_of_the_answer():
    answer = [4, 5, 6, 4, 5, 7, 4, 5]
    assert sorted(repeated_ngram_bans(answer, 3)) == [6, 7]
    assert repeated_ngram_bans(answer, 0) == []
    assert sorted(repeated_ngram_bans(answer, 1)) == [4, 4, 4, 5, 5, 5, 6, 7]
    assert allowed_prefix([9, 4, 5, 6], [4, 5, 6], 3) == [9, 4, 5]  # "4 5 6" would come again


def plain_greedy(model, ids, max_new_tokens, eos, min_new_tokens=0):
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         min_new_tokens=min_new_tokens, do_sample=False, eos_token_id=eos, pad_token_id=eos)
    return out[0, ids.shape[1]:].tolist()


def decode(model, embeds, prompt_ids, max_new_tokens, rules, **kwargs) -> list[int]:
    return [token for group in greedy_lookup_decode(model, embeds, prompt_ids, max_new_tokens, rules, **kwargs)
            for token in group]


class CountingBackbone(torch.nn.Module):
    """Wraps a causal LM and counts its forward passes."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, **kwargs):
        self.calls += 1
        return self.model(**kwargs)


@pytest.mark.parametrize("seed", range(4))
def test_lookup_decoding_gives_exactly_the_greedy_tokens_with_fewer_passes(tiny_llama, seed):
    torch.manual_seed(seed)
    motif = torch.randint(5, tiny_llama.config.vocab_size, (6,))
    ids = torch.cat([motif.repeat(4), torch.randint(5, tiny_llama.config.vocab_size, (3,)), motif[:2]])[None]
    expected = plain_greedy(tiny_llama, ids, 40, eos=-1)
    counting, first = CountingBackbone(tiny_llama), []
    with torch.no_grad():
        embeds = tiny_llama.get_input_embeddings()(ids)
        groups = list(greedy_lookup_decode(counting, embeds, ids[0].tolist(), 40, AnswerRules(-1),
                                           on_first_logits=first.append))
        tokens = [token for group in groups for token in group]
        answer_logits = tiny_llama(input_ids=ids).logits[0, -1]
    assert tokens == expected and len(groups) < len(expected)  # some groups carry accepted drafts
    assert torch.allclose(first[0], answer_logits, atol=1e-5)
    assert counting.calls < len(expected)  # random tiny models repeat themselves: drafts get accepted


def twenty_token_prompt(model):
    """A fixed 20-token prompt, and a function decoding from it: (max_new_tokens, rules) -> tokens."""
    ids = torch.arange(5, 25)[None]
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids)
    return ids, lambda max_new_tokens, rules: decode(model, embeds, ids[0].tolist(), max_new_tokens, rules)


def test_lookup_decoding_stops_at_the_end_token_and_at_the_cap(tiny_llama):
    _, decode_from = twenty_token_prompt(tiny_llama)
    free = decode_from(30, AnswerRules(-1))
    eos = free[5]  # pretend the sixth token ends the answer
    stopped = decode_from(30, AnswerRules(eos))
    capped = decode_from(7, AnswerRules(-1))
    assert stopped == free[: free.index(eos) + 1]
    assert capped == free[:7]


def test_the_end_token_is_barred_before_the_minimum_length(tiny_llama):
    ids, decode_from = twenty_token_prompt(tiny_llama)
    free = decode_from(30, AnswerRules(-1))
    eos = free[2]  # the third token would end the answer
    held = decode_from(30, AnswerRules(eos, min_new_tokens=12))
    assert eos not in held[:12]
    assert held == plain_greedy(tiny_llama, ids, 30, eos, min_new_tokens=12)


def test_lookup_decoding_refuses_a_batch(tiny_llama):
    with pytest.raises(ValueError, match="one prompt at a time"):
        decode(tiny_llama, torch.zeros(2, 3, tiny_llama.config.hidden_size), [1, 2, 3], 5, AnswerRules(0))


def has_repeated_ngram(tokens: list[int], n: int) -> bool:
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


def test_lookup_decoding_with_ngram_bans_matches_generate_with_the_same_ban(tiny_llama):
    from transformers import LogitsProcessorList

    torch.manual_seed(3)
    motif = torch.randint(5, tiny_llama.config.vocab_size, (5,))
    ids = torch.cat([motif.repeat(3), motif[:2]])[None]
    with torch.no_grad():
        embeds = tiny_llama.get_input_embeddings()(ids)
        free = decode(tiny_llama, embeds, ids[0].tolist(), 40, AnswerRules(-1))
        rules = AnswerRules(-1, no_repeat_ngram=3)
        banned = decode(tiny_llama, embeds, ids[0].tolist(), 40, rules)
        reference = tiny_llama.generate(inputs_embeds=embeds, attention_mask=torch.ones_like(ids), max_new_tokens=40,
                                        do_sample=False, pad_token_id=0, eos_token_id=None,
                                        logits_processor=LogitsProcessorList([AnswerNgramBan(rules)]))
    assert has_repeated_ngram(free, 3) and not has_repeated_ngram(banned, 3)
    assert banned == reference[0].tolist()


class WordVocabulary:
    """A tokenizer's vocabulary and nothing else: "their history", spaced and run on."""

    def get_vocab(self) -> dict[str, int]:
        return {"<eos>": 0, "Ġhistory": 5, "history": 6, "Ġtheir": 7, "their": 8, "x": 9, "Ġ": 10}


def test_a_barred_word_is_barred_in_both_spellings():
    variants = spelling_variants(WordVocabulary())
    assert variants == {5: (6,), 6: (5,), 7: (8,), 8: (7,)}
    logits = torch.full((11,), -10.0)
    logits[[5, 6, 9]] = torch.tensor([3.0, 2.0, 1.0])  # " history", then "history" glued on, then "x"
    answer = [7, 5, 7]  # "their history their": the bigram "their history" is in the answer already
    assert AnswerRules(0, no_repeat_ngram=2).choose(logits, answer) == 6  # "theirhistory"
    assert AnswerRules(0, no_repeat_ngram=2, spellings=variants).choose(logits, answer) == 9
    assert AnswerRules(0, spellings=variants).choose(logits, answer) == 5  # no rule, nothing barred


class QuotingVocabulary:
    """A byte-level vocabulary with quotes: ' "', '".', '""' (two marks: opens and closes), words."""

    def get_vocab(self) -> dict[str, int]:
        return {"<eos>": 0, 'Ġ"': 1, '".': 2, '""': 3, "ĠAs": 4, "ĠGood": 5, "ĠGets": 6, "Gets": 7, "Ġx": 8}


def test_the_no_repeat_rule_sleeps_inside_a_quote_so_a_title_said_again_stays_whole():
    quotes = quote_tokens(QuotingVocabulary())
    assert quotes == {1, 2}
    first = [1, 4, 5, 6, 2]  # ' "As Good Gets".'
    again = first + [8, 1, 4, 5]  # ... x "As Good
    assert quote_state(again, quotes) == (True, 2) and quote_state(first, quotes) == (False, 0)
    logits = torch.full((9,), -10.0)
    logits[[6, 7]] = torch.tensor([3.0, 2.0])  # " Gets", or "Gets" glued on
    assert AnswerRules(0, no_repeat_ngram=3).choose(logits, again) == 7  # "As GoodGets"
    spared = AnswerRules(0, no_repeat_ngram=3, quotes=quotes)
    assert spared.choose(logits, again) == 6  # the title whole
    logits[[2, 8]] = torch.tensor([5.0, 6.0])
    assert spared.choose(logits, again + [6]) == 8  # inside the span nothing is barred
    assert spared.choose(logits, again + [6, 2]) == 2  # outside again: ' x' would repeat 'Gets". x'
    assert spared.repeat_bans(first + [8, 4, 5]) == [6]  # a repeated phrase outside quotes is barred as before
    unclosed = [1] + [4, 5, 6] * 11  # a quote never closed is no title: the rule wakes up
    assert spared.repeat_bans(unclosed[:QUOTED_TOKENS_SPARED]) == []
    assert spared.repeat_bans(unclosed[:QUOTED_TOKENS_SPARED + 1]) != []


def test_the_draft_trimmer_spares_quotes_as_the_rules_do():
    quotes = quote_tokens(QuotingVocabulary())
    answer = [1, 4, 5, 6, 2, 8]  # ' "As Good Gets". x'
    draft = [1, 4, 5, 6, 2, 8]  # the same again
    assert allowed_prefix(draft, answer, 3) == [1, 4]  # ' "As Good' is said already
    assert allowed_prefix(draft, answer, 3, quotes=quotes) == [1, 4, 5, 6, 2]  # whole, up to 'Gets". x' outside
    rules = AnswerRules(0, no_repeat_ngram=3, quotes=quotes)
    history = list(answer)
    for token in draft:
        if token in rules.repeat_bans(history):
            break
        history.append(token)
    assert history[len(answer):] == allowed_prefix(draft, answer, 3, quotes=quotes)


def test_sampling_keeps_the_same_rule_as_greedy_decoding():
    quotes = quote_tokens(QuotingVocabulary())
    rules = AnswerRules(0, no_repeat_ngram=3, quotes=quotes)
    answer = torch.tensor([[1, 4, 5, 6, 2, 8, 1, 4, 5], [4, 5, 6, 8, 8, 8, 8, 4, 5]])
    scores = AnswerNgramBan(rules)(answer, torch.zeros(2, 9))
    assert scores[0].isinf().sum() == 0  # inside a quote: nothing barred
    assert scores[1].isinf().nonzero().flatten().tolist() == [6]  # "As Good Gets" outside quotes: barred

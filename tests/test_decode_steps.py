"""Decoding passes over a cache allocated once give the model forward's logits."""

import pytest
import torch

from thinkrec.llm.decode_steps import LlamaSteps, ModelSteps, decoding_steps
from thinkrec.llm.lookup_decoding import AnswerRules, greedy_lookup_decode


def prompt_embeds(model, length=12, seed=0):
    torch.manual_seed(seed)
    ids = torch.randint(5, model.config.vocab_size, (1, length))
    with torch.no_grad():
        return ids, model.get_input_embeddings()(ids)


@pytest.mark.parametrize("steps_kind", [LlamaSteps, ModelSteps])
def test_each_pass_gives_the_logits_of_one_forward_over_the_whole_sequence(tiny_llama, steps_kind):
    ids, embeds = prompt_embeds(tiny_llama)
    passes = steps_kind(tiny_llama, 40) if steps_kind is LlamaSteps else steps_kind(tiny_llama)
    with torch.no_grad():
        first = passes.start(embeds)
        step = passes.step([7, 8, 9])
        passes.drop(2)  # keep 7 only, as lookup decoding does after a rejected draft
        again = passes.step([10])
        whole = tiny_llama(input_ids=torch.cat([ids, torch.tensor([[7, 8, 9]])], dim=1)).logits[0]
        after_drop = tiny_llama(input_ids=torch.cat([ids, torch.tensor([[7, 10]])], dim=1)).logits[0, -1]
    assert torch.allclose(first, whole[ids.shape[1] - 1], atol=1e-6)
    assert torch.allclose(step, whole[ids.shape[1]:], atol=1e-6)
    assert torch.allclose(again[0], after_drop, atol=1e-6)


def test_llama_steps_match_the_eager_model_forward_to_rounding(tiny_llama):
    tiny_llama.set_attn_implementation("eager")  # as ``decoder.decoding_backbone`` sets it
    ids, embeds = prompt_embeds(tiny_llama, length=20, seed=3)
    steps, model = LlamaSteps(tiny_llama, 32), ModelSteps(tiny_llama)
    with torch.no_grad():
        assert torch.allclose(steps.start(embeds), model.start(embeds), rtol=0, atol=1e-6)
        for tokens in ([11], [12, 13, 14], [15]):
            assert torch.allclose(steps.step(tokens), model.step(tokens), rtol=0, atol=1e-6)


def test_a_llama_backbone_gets_llama_steps_and_anything_else_its_own_forward(tiny_llama):
    class Wrapper(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, **kwargs):
            return self.model(**kwargs)

    assert isinstance(decoding_steps(tiny_llama, 8), LlamaSteps)
    assert isinstance(decoding_steps(Wrapper(tiny_llama), 8), ModelSteps)


def test_a_pass_beyond_the_cache_is_refused_by_name(tiny_llama):
    _, embeds = prompt_embeds(tiny_llama, length=6)
    steps = LlamaSteps(tiny_llama, 8)
    with torch.no_grad():
        steps.start(embeds)
        with pytest.raises(ValueError, match="holds 8 positions, 9 asked for"):
            steps.step([5, 6, 7])


def test_lookup_decoding_on_llama_steps_writes_the_plain_greedy_answer(tiny_llama):
    ids, embeds = prompt_embeds(tiny_llama, length=16, seed=1)
    with torch.no_grad():
        expected = tiny_llama.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=30,
                                       do_sample=False, eos_token_id=-1, pad_token_id=0)[0, ids.shape[1]:].tolist()
    tokens = [t for group in greedy_lookup_decode(tiny_llama, embeds, ids[0].tolist(), 30, AnswerRules(-1))
              for t in group]
    assert tokens == expected

"""Answers written offline (the reasoning stage): greedy ones decoded several prompts at once, not streamed.

One decoding step of a 135M model on two CPU cores goes mostly into reading its weights, so a step over
ten answers costs about twice a step over one (143 against 65 ms here): decoding the reference rows in batches
(``llm.reasoning_chunk_rows``) gives each answer the tokens ``lookup_decoding`` gives it alone (up to
floating-point ties), under the same ``AnswerRules``, in less time. On ThinkRec's first reference rows in fp32
on an AVX2 CPU: 1.73 times faster in batches of 10, 2.53 in batches of 20, every answer the same text
(``benchmarks/llm_speed.py --batch 20``).

Prompts are left-padded (``model.collate``) with positions counted from each row's first real token, as
scoring does; a row that has ended is fed its end token until every row has ended, and its later tokens are
dropped.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from thinkrec.llm.generate import GenerationSettings, stream_text
from thinkrec.llm.lookup_decoding import AnswerRules
from thinkrec.llm.lora_mixture import mixture
from thinkrec.llm.model import SoftTokenLM, collate
from thinkrec.llm.prompt import EncodedPrompt


@dataclass(frozen=True)
class DecodedAnswer:
    """One answer of a batch: its token ids (with the end token, when it ended so) and P(Yes) at the answer
    position."""

    token_ids: list[int]
    p_yes: float


@torch.inference_mode()
def greedy_decode_batch(model: SoftTokenLM, prompts: list[EncodedPrompt], pad_id: int, max_new_tokens: int,
                        rules: AnswerRules, decoder: nn.Module | None = None) -> list[DecodedAnswer]:
    """Greedy answers to ``prompts`` under ``rules``, decoded together on ``decoder`` (a ``decoding_backbone``
    of ``model.backbone``; the backbone itself when None). An adapter mixture set by the caller applies per row."""
    if not prompts:
        return []
    backbone = model.backbone if decoder is None else decoder
    batch = collate(prompts, pad_id)
    embeds = model.input_embeddings(batch).to(next(backbone.parameters()).dtype)
    mask, positions = batch.attention_mask, batch.position_ids
    output = backbone(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True,
                      logits_to_keep=1)
    cache, logits = output.cache, output.logits[:, -1].float()
    p_yes = torch.sigmoid(logits[:, model.yes_id] - logits[:, model.no_id]).tolist()
    answers: list[list[int]] = [[] for _ in prompts]
    ended = [False] * len(prompts)
    next_position = positions[:, -1] + 1
    while True:
        step_tokens = []
        for row, answer in enumerate(answers):
            token = rules.eos_token_id if ended[row] else rules.choose(logits[row], answer)
            if not ended[row]:  # as in lookup decoding, the end token counts as the answer's last token
                answer.append(token)
                ended[row] = token == rules.eos_token_id or len(answer) >= max_new_tokens
            step_tokens.append(token)
        if all(ended):
            return [DecodedAnswer(answer, p) for answer, p in zip(answers, p_yes)]
        mask = torch.cat([mask, torch.ones(len(prompts), 1, dtype=mask.dtype)], dim=1)
        step = backbone(input_ids=torch.tensor(step_tokens)[:, None], attention_mask=mask,
                        position_ids=next_position[:, None], cache=cache, use_cache=True)
        cache, logits = step.cache, step.logits[:, -1].float()
        next_position = next_position + 1


@dataclass(frozen=True)
class WrittenAnswer:
    """An answer as the reasoning stage stores it: its text, P(Yes) and how many tokens it took."""

    text: str
    p_yes: float
    new_tokens: int


def write_answers(model: SoftTokenLM, tokenizer, prompts: list[EncodedPrompt], settings: GenerationSettings,
                  decoder: nn.Module | None = None, mixtures: np.ndarray | None = None) -> list[WrittenAnswer]:
    """The answers to ``prompts`` that the demo's streams write (the same tokens, up to floating-point ties):
    greedy ones decoded together, sampled ones one by one. ``mixtures`` (rows x adapters) gives each row its
    adapter mixture."""
    settings = settings.checked()

    def routing(rows):
        return nullcontext() if mixtures is None else mixture(torch.as_tensor(mixtures[rows]))

    if settings.do_sample:
        written = []
        for row, prompt in enumerate(prompts):
            with routing([row]):
                stream = stream_text(model, tokenizer, prompt, settings, decoder=decoder)
                text = "".join(stream)
            written.append(WrittenAnswer(text, stream.p_yes, stream.new_tokens))
        return written
    rules = AnswerRules.from_settings(tokenizer, settings)
    with routing(slice(None)):
        decoded = greedy_decode_batch(model, prompts, tokenizer.pad_token_id, settings.max_new_tokens, rules, decoder)
    return [WrittenAnswer(tokenizer.decode(answer.token_ids, skip_special_tokens=True), answer.p_yes,
                          len(answer.token_ids)) for answer in decoded]

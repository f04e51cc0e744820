"""Greedy decoding sped up by prompt lookup: exact, and about twice as fast on a CPU.

On a CPU, one decoding step of a small LM costs about as much for a handful of tokens as for one: the
time goes into reading the weights, not into arithmetic. Reasoning about a recommendation quotes its
prompt a lot (titles, genres, keywords), so the continuation of the last few tokens can often be
guessed by finding the same n-gram earlier in the prompt or the answer. Each step feeds the next token
plus such a guess (the *draft*) and keeps the longest prefix of the draft that greedy decoding would
have produced anyway; the cache is cut back past the rest. The text is the same as plain greedy
decoding's (up to floating-point ties); only the number of forward passes drops.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

DRAFT_TOKENS = 8  # longest guess checked per step
LONGEST_NGRAM = 3  # n-grams tried, longest first, to find where the answer quotes earlier text


def draft_from_history(history: list[int], max_tokens: int, longest_ngram: int = LONGEST_NGRAM) -> list[int]:
    """The tokens that followed the latest earlier occurrence of the history's final n-gram (n = longest..1)."""
    if max_tokens <= 0:
        return []
    for n in range(min(longest_ngram, len(history) - 1), 0, -1):
        tail = history[-n:]
        for start in range(len(history) - n - 1, -1, -1):
            if history[start:start + n] == tail:
                return history[start + n:start + n + max_tokens]
    return []


@torch.no_grad()
def greedy_lookup_decode(backbone, inputs_embeds: torch.Tensor, prompt_ids: list[int], max_new_tokens: int,
                         eos_token_id: int, on_tokens: Callable[[list[int]], None],
                         on_first_logits: Callable[[torch.Tensor], None] = lambda logits: None,
                         draft_tokens: int | None = None) -> list[int]:
    """Decode greedily from one prompt (``inputs_embeds``: 1 x T x d, unpadded); return the new tokens.

    ``on_tokens`` receives each accepted group of tokens as soon as it is known (for streaming);
    ``on_first_logits`` the logits at the answer position, before the first token is chosen."""
    draft_tokens = DRAFT_TOKENS if draft_tokens is None else draft_tokens
    if inputs_embeds.shape[0] != 1:
        raise ValueError(f"lookup decoding serves one prompt at a time, got a batch of {inputs_embeds.shape[0]}")
    output = backbone(inputs_embeds=inputs_embeds, use_cache=True, logits_to_keep=1)
    cache, logits = output.cache, output.logits[0, -1]
    on_first_logits(logits)
    history, generated = list(prompt_ids), []
    while True:
        token = int(logits.argmax())
        accepted = [token]
        if token != eos_token_id and len(generated) + 1 < max_new_tokens:
            room = min(draft_tokens, max_new_tokens - len(generated) - 1) if generated else 0  # verdict first, fast
            draft = draft_from_history(history + [token], room)
            step = backbone(input_ids=torch.tensor([[token, *draft]], device=inputs_embeds.device),
                            cache=cache, use_cache=True)
            predicted = step.logits[0].argmax(-1).tolist()
            while len(accepted) <= len(draft) and accepted[-1] != eos_token_id \
                    and predicted[len(accepted) - 1] == draft[len(accepted) - 1]:
                accepted.append(draft[len(accepted) - 1])
            rejected = len(draft) + 1 - len(accepted)
            if rejected:
                cache.crop(-rejected)
            logits = step.logits[0, len(accepted) - 1]
        generated += accepted
        history += accepted
        on_tokens(accepted)
        if accepted[-1] == eos_token_id or len(generated) >= max_new_tokens:
            return generated

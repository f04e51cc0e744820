"""The forward passes of greedy decoding: one over the prompt, then steps of a few tokens each over a cache
that can be cut back (``lookup_decoding`` drops the draft tokens greedy decoding would not have chosen).

A model's own forward serves every causal LM, and per step it pays for that generality: a cache object that
grows by concatenation, masks built on every call, the shared key and value heads of grouped attention copied
out to every query head, output records. For a 135M model on two cores that bookkeeping costs about as much as
the matrix products. ``LlamaSteps`` runs a Llama-family backbone's own modules (so packed weights and adapter
mixtures apply as they do in the model's forward) over a cache allocated once, and multiplies each group of
query heads with its shared key and value head in place: the same operations on the same numbers, so the
logits are the model forward's up to the order of a product's sums (``tests/test_decode_steps.py``; on the
shipped bfloat16 decoder equal to the bit over a prompt and a three-token step), in less time per step
(``benchmarks/llm_speed.py``). Any other backbone steps through its own forward (``ModelSteps``).
"""

from __future__ import annotations

import torch
from torch import nn


class ModelSteps:
    """Decoding passes through the model's own forward and cache (any Hugging Face causal LM)."""

    def __init__(self, backbone: nn.Module):
        self.backbone, self.cache, self.device = backbone, None, None

    def start(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """The logits at the prompt's last position (``inputs_embeds``: 1 x T x d), filling the cache."""
        output = self.backbone(inputs_embeds=inputs_embeds, use_cache=True, logits_to_keep=1)
        self.cache, self.device = output.cache, inputs_embeds.device
        return output.logits[0, -1]

    def step(self, tokens: list[int]) -> torch.Tensor:
        """The logits (len(tokens) x vocabulary) after each of ``tokens``, appended to the cache."""
        output = self.backbone(input_ids=torch.tensor([tokens], device=self.device), cache=self.cache,
                               use_cache=True)
        return output.logits[0]

    def drop(self, count: int) -> None:
        """Forget the cache's last ``count`` tokens."""
        if count:
            self.cache.crop(-count)


class LlamaSteps:
    """Decoding passes of a Llama-family backbone over a key/value cache of ``capacity`` positions."""

    def __init__(self, backbone: nn.Module, capacity: int):
        model = base_model(backbone)
        self.layers, self.embed, self.norm = model.model.layers, model.model.embed_tokens, model.model.norm
        self.head = model.get_output_embeddings()
        config = model.config
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.groups = self.heads // self.kv_heads
        self.scaling = self.head_dim ** -0.5
        weight = self.embed.weight
        self.cos, self.sin = rotary_table(model.model.rotary_emb, capacity, weight.dtype, weight.device)
        layers, like = len(self.layers), {"dtype": weight.dtype, "device": weight.device}
        # Keys are kept transposed (head_dim x positions), so the score product reads them where they lie.
        self.keys = torch.empty(layers, self.kv_heads, self.head_dim, capacity, **like)
        self.values = torch.empty(layers, self.kv_heads, capacity, self.head_dim, **like)
        self.length = 0

    def start(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        if inputs_embeds.shape[0] != 1:
            raise ValueError(f"decoding steps serve one prompt at a time, got a batch of {inputs_embeds.shape[0]}")
        self.length = 0
        return self.head(self.norm(self.forward(inputs_embeds)[:, -1:]))[0, -1]

    def step(self, tokens: list[int]) -> torch.Tensor:
        hidden = self.embed(torch.tensor([tokens], device=self.keys.device))
        return self.head(self.norm(self.forward(hidden)))[0]

    def drop(self, count: int) -> None:
        self.length -= count

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """The last layer's hidden states for ``hidden`` (1 x t x d), placed after the cached positions."""
        start, count = self.length, hidden.shape[1]
        if start + count > self.values.shape[2]:
            raise ValueError(f"the decoding cache holds {self.values.shape[2]} positions, {start + count} asked for")
        cos, sin = self.cos[start:start + count], self.sin[start:start + count]
        mask = None if count == 1 else causal_mask(start, count, self.groups, hidden.dtype, hidden.device)
        for index, layer in enumerate(self.layers):
            attended = self.attention(layer.self_attn, layer.input_layernorm(hidden), index, cos, sin, mask)
            hidden = hidden + attended
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        self.length = start + count
        return hidden

    def attention(self, attn: nn.Module, hidden: torch.Tensor, index: int, cos: torch.Tensor, sin: torch.Tensor,
                  mask: torch.Tensor | None) -> torch.Tensor:
        count, stop = hidden.shape[1], self.length + hidden.shape[1]
        query = attn.q_proj(hidden).view(count, self.heads, self.head_dim).transpose(0, 1)
        key = attn.k_proj(hidden).view(count, self.kv_heads, self.head_dim).transpose(0, 1)
        self.keys[index, :, :, self.length:stop] = rotate(key, cos, sin).transpose(1, 2)
        self.values[index, :, self.length:stop] = attn.v_proj(hidden).view(count, self.kv_heads,
                                                                             self.head_dim).transpose(0, 1)
        # Query head h reads key/value head h // groups: each kv head's queries side by side, one product each.
        query = rotate(query, cos, sin).reshape(self.kv_heads, self.groups * count, self.head_dim)
        scores = torch.bmm(query, self.keys[index, :, :, :stop]) * self.scaling
        if mask is not None:
            scores = scores + mask
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        out = torch.bmm(weights, self.values[index, :, :stop])
        return attn.o_proj(out.view(self.heads, count, self.head_dim).transpose(0, 1).reshape(1, count, -1))


def base_model(backbone: nn.Module) -> nn.Module:
    """The causal LM under a PEFT wrapper, or ``backbone`` itself."""
    return backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone


def runs_llama_steps(backbone: nn.Module) -> bool:
    """Whether ``backbone`` is a Llama-family causal LM with plain rotary positions (what ``LlamaSteps`` runs)."""
    model = base_model(backbone)
    config = getattr(model, "config", None)
    rotary = getattr(getattr(model, "model", None), "rotary_emb", None)
    return getattr(config, "model_type", None) == "llama" and getattr(rotary, "rope_type", None) == "default"


def decoding_steps(backbone: nn.Module, capacity: int) -> LlamaSteps | ModelSteps:
    """The fastest decoding passes ``backbone`` allows, with room for ``capacity`` positions."""
    return LlamaSteps(backbone, capacity) if runs_llama_steps(backbone) else ModelSteps(backbone)


def rotary_table(rotary: nn.Module, length: int, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of positions 0..length-1, computed as the model's rotary module computes them."""
    positions = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freqs = positions * rotary.inv_freq.to(device=device, dtype=torch.float32)
    angles = torch.cat((freqs, freqs), dim=-1)
    scale = rotary.attention_scaling
    return (angles.cos() * scale).to(dtype), (angles.sin() * scale).to(dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of ``x`` (heads x t x head_dim)."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def causal_mask(start: int, count: int, groups: int, dtype: torch.dtype, device) -> torch.Tensor:
    """The additive mask of ``count`` new positions after ``start`` cached ones, repeated for each of the
    ``groups`` query heads sharing a key head (rows in ``LlamaSteps.attention``'s order)."""
    rows = torch.arange(start, start + count, device=device)[:, None]
    columns = torch.arange(start + count, device=device)[None, :]
    mask = torch.zeros(count, start + count, dtype=dtype, device=device)
    return mask.masked_fill(columns > rows, torch.finfo(dtype).min).repeat(groups, 1)

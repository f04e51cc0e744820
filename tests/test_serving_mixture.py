"""Generation is bound to its mixture: on the tiny model with experts that differ, every streamed answer
(each ablation variant, the fused system, two streams interleaved) is the text of a model whose LoRA
update is merged with that answer's own weights."""

from __future__ import annotations

import copy
import string

import numpy as np
import torch
from torch import nn

from thinkrec.llm.decoder import decoding_backbone
from thinkrec.llm.generate import GenerationSettings, generate_text
from thinkrec.llm.lora_mixture import MixtureLoRALinear

SETTINGS = GenerationSettings(max_new_tokens=16, min_new_tokens=16)


def make_experts_differ(model) -> None:
    """Give every adapter slot its own strong random LoRA update (trained tiny experts barely move)."""
    generator = torch.Generator().manual_seed(7)
    for layer in model.backbone.modules():
        if isinstance(layer, MixtureLoRALinear):
            layer.lora_a.copy_(torch.randn(layer.lora_a.shape, generator=generator) * 0.5)
            layer.lora_b.copy_(torch.randn(layer.lora_b.shape, generator=generator) * 0.5)


def write_letters_only(model, tokenizer) -> None:
    """Bar every token but ASCII letters and the space, so that answers are readable text whose every token
    shows (a random model's raw bytes decode to replacement characters that would all compare equal)."""
    vocab = tokenizer.get_vocab()
    allowed = [vocab[c] for c in string.ascii_letters + "Ġ" if c in vocab]
    head = model.backbone.lm_head
    barred = nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        barred.weight.copy_(head.weight)
        barred.bias.fill_(-1e4)
        barred.bias[allowed] = 0.0
    model.backbone.lm_head = barred


def merged(model, weights: np.ndarray):
    """A copy of ``model`` whose adapted layers are plain linear layers with W + sum_e w_e B_e A_e."""
    model = copy.deepcopy(model)
    mix = torch.as_tensor(weights, dtype=torch.float32)
    for name, layer in list(model.backbone.named_modules()):
        if isinstance(layer, MixtureLoRALinear):
            plain = nn.Linear(layer.base.in_features, layer.base.out_features, bias=layer.base.bias is not None)
            with torch.no_grad():
                plain.weight.copy_(layer.base.weight + torch.einsum("e,eor,eri->oi", mix, layer.lora_b, layer.lora_a))
                if layer.base.bias is not None:
                    plain.bias.copy_(layer.base.bias)
            parent, _, child = name.rpartition(".")
            setattr(model.backbone.get_submodule(parent), child, plain)
    return model


def test_every_answer_follows_its_own_mixture(tiny_llm_explorer):
    explorer, bank = tiny_llm_explorer, tiny_llm_explorer.bank
    served = bank.served["thinkrec"]
    make_experts_differ(served.model)
    write_letters_only(served.model, served.builder.tokenizer)
    bank.decoder = decoding_backbone(served.model.backbone, "float32")  # the rewritten weights, decoded as merged()
    case = explorer.case("2", explorer.test_items("2")["item_id"].iloc[0])
    prompt, tokenizer = bank.prompt("thinkrec", case), served.builder.tokenizer

    def reference(weights):
        return generate_text(merged(served.model, weights), tokenizer, prompt, SETTINGS)

    variants = bank.ablation(case.user, 0.5)
    texts = {v.label: "".join(explorer.explain(case, "thinkrec", SETTINGS, variant=v).stream) for v in variants}
    for variant in variants:
        assert texts[variant.label] == reference(variant.weights), variant.label
    assert texts["Expert 1"] != texts["Expert 2"] != texts["Global adapter"]  # the experts really differ here
    fused = "".join(explorer.explain(case, "fused", SETTINGS, tau=0.5).stream)
    assert fused == reference(bank.weights("fused", case.user, 0.5)) == texts["Gate's choice (fused)"]

    # two answers streaming at once, pulled in turns as two visitors' would be, keep their own mixtures
    first, second = (iter(explorer.explain(case, "thinkrec", SETTINGS, variant=v).stream) for v in variants[1:3])
    pieces = {1: [], 2: []}
    for _ in range(64):
        for number, stream in ((1, first), (2, second)):
            piece = next(stream, None)
            if piece is not None:
                pieces[number].append(piece)
    assert "".join(pieces[1]) == texts["Expert 1"] and "".join(pieces[2]) == texts["Expert 2"]

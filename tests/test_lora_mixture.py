"""Exact, per-row, thread-safe mixing of LoRA adapters."""

from __future__ import annotations

import copy
import threading
from types import SimpleNamespace

import pytest
import torch
from peft import LoraConfig, get_peft_model

from thinkrec.errors import CheckpointError
from thinkrec.llm.lora_mixture import MixtureLoRALinear, install_mixture, mixture, read_adapter
from thinkrec.llm.score import can_compile, compiled_layers

TARGETS = ("q_proj", "v_proj")


@pytest.fixture
def adapters(tiny_llama, tmp_path):
    """Three PEFT adapter folders with random (non-zero) A and B, as training would leave them."""
    folders = []
    for number in range(3):
        torch.manual_seed(100 + number)
        peft_model = get_peft_model(copy.deepcopy(tiny_llama),
                                    LoraConfig(r=4, lora_alpha=8, target_modules=list(TARGETS)))
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_" in name:
                    param.normal_(0, 0.2)
        folder = tmp_path / f"adapter{number}"
        peft_model.save_pretrained(folder)
        folders.append(folder)
    return folders


def merged_model(base, folders, weights):
    """The explicit reference: W' = W + sum_e w_e * (alpha/r) * B_e A_e in every adapted layer."""
    model = copy.deepcopy(base)
    for folder, weight in zip(folders, weights):
        pairs, scale = read_adapter(folder)
        for name, (lora_a, lora_b) in pairs.items():
            layer = model.get_submodule(name)
            with torch.no_grad():
                layer.weight += weight * scale * lora_b @ lora_a
    return model


def test_fused_output_equals_the_merged_weight_model(tiny_llama, adapters):
    fused = install_mixture(copy.deepcopy(tiny_llama), adapters)
    assert sum(isinstance(m, MixtureLoRALinear) for m in fused.modules()) == 2 * len(TARGETS)
    ids = torch.randint(0, 200, (1, 17))
    for weights in ([0.2, 0.5, 0.3], [1.0, 0.0, 0.0], [0.0, 0.7, 0.3]):
        with mixture(torch.tensor([weights])):
            got = fused(input_ids=ids).logits
        expected = merged_model(tiny_llama, adapters, weights)(input_ids=ids).logits
        assert torch.allclose(got, expected, atol=1e-5)


def test_mixing_a_and_b_separately_is_not_the_same(tiny_llama, adapters):
    """The published code's PEFT 'linear' merge: (sum w A)(sum w B) has cross terms."""
    pairs = [read_adapter(f)[0] for f in adapters]
    name = next(iter(pairs[0]))
    weights = [0.2, 0.5, 0.3]
    exact = sum(w * p[name][1] @ p[name][0] for w, p in zip(weights, pairs))
    crossed = sum(w * p[name][1] for w, p in zip(weights, pairs)) @ sum(w * p[name][0] for w, p in zip(weights, pairs))
    assert not torch.allclose(exact, crossed, atol=1e-3)


def test_a_mixed_batch_equals_its_rows_scored_one_by_one(tiny_llama, adapters):
    fused = install_mixture(copy.deepcopy(tiny_llama), adapters)
    ids = torch.randint(0, 200, (3, 11))
    weights = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.4, 0.6], [0.0, 0.0, 1.0]])
    with mixture(weights):
        together = fused(input_ids=ids).logits
    for row in range(3):
        with mixture(weights[row:row + 1]):
            alone = fused(input_ids=ids[row:row + 1]).logits
        assert torch.allclose(together[row], alone[0], atol=1e-5)


def test_concurrent_requests_do_not_disturb_each_other(tiny_llama, adapters):
    fused = install_mixture(copy.deepcopy(tiny_llama), adapters)
    ids = torch.randint(0, 200, (1, 13))
    cases = [torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.5, 0.5]]), torch.tensor([[0.1, 0.2, 0.7]])]
    sequential = []
    for weights in cases:
        with mixture(weights):
            sequential.append(fused(input_ids=ids).logits)
    results: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(cases))}

    def serve(index: int) -> None:
        for _ in range(15):
            with mixture(cases[index]):
                results[index].append(fused(input_ids=ids).logits)

    threads = [threading.Thread(target=serve, args=(i,)) for i in range(len(cases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, outputs in results.items():
        assert len(outputs) == 15 and all(torch.allclose(o, sequential[index], atol=1e-6) for o in outputs)


@pytest.mark.skipif(not can_compile(), reason="torch.compile's inductor needs a C++ compiler (g++ or c++)")
def test_compiled_layers_mix_as_eager_ones_without_a_graph_per_mixture(tiny_llama, adapters):
    """Batch scoring's compiled layers (``score.compiled_layers``) take each batch's mixture as an input: every
    mixture, one adapter or several, runs through the same graph and gives the eager layers' output."""
    from torch._dynamo.utils import counters

    fused = install_mixture(copy.deepcopy(tiny_llama), adapters).eval()
    layers = len(fused.get_decoder().layers)
    ids = torch.randint(0, 200, (3, 11))
    torch._dynamo.reset()
    graphs = counters["stats"]["unique_graphs"]
    for weights in ([[1.0, 0.0, 0.0], [0.0, 0.4, 0.6], [0.0, 0.0, 1.0]], [[0.0, 1.0, 0.0]] * 3,
                    [[0.2, 0.5, 0.3]] * 3, [[0.0, 0.0, 0.0]] * 3):
        with mixture(torch.tensor(weights)):
            eager = fused(input_ids=ids).logits
            with compiled_layers(SimpleNamespace(backbone=fused), layers):
                compiled = fused(input_ids=ids).logits
        assert torch.allclose(compiled, eager, atol=1e-5), weights
    assert counters["stats"]["unique_graphs"] - graphs == 1  # one graph, unbroken, for every mixture
    assert not any("traced_weights" in vars(m) for m in fused.modules())  # the mixture is not left behind
    with compiled_layers(SimpleNamespace(backbone=fused), layers):
        with pytest.raises(RuntimeError, match="no adapter mixture"):
            fused(input_ids=ids)
        with pytest.raises(ValueError, match="mixture of shape"), mixture(torch.ones(1, 3)):
            fused(input_ids=ids)


def test_missing_or_wrong_mixture_is_an_error(tiny_llama, adapters):
    fused = install_mixture(copy.deepcopy(tiny_llama), adapters)
    ids = torch.randint(0, 200, (2, 5))
    with pytest.raises(RuntimeError, match="no adapter mixture"):
        fused(input_ids=ids)
    with pytest.raises(ValueError, match="mixture of shape"), mixture(torch.ones(1, 3)):
        fused(input_ids=ids)


def test_damaged_adapter_folder_is_named(tiny_llama, adapters):
    (adapters[1] / "adapter_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="adapter1"):
        install_mixture(copy.deepcopy(tiny_llama), adapters)
    (adapters[2] / "adapter_config.json").unlink()
    with pytest.raises(CheckpointError, match="adapter_config.json"):
        read_adapter(adapters[2])

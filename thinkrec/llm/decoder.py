"""The backbone streamed answers run on (``llm.decode_dtype``): a bfloat16 copy prepared for decoding on a CPU
that multiplies bfloat16 natively, the fp32 backbone itself elsewhere.

A decoding step of a 135M model on two cores costs what its matrix products over a handful of
rows cost. From bfloat16 weights that oneDNN has packed once (``PackedLinear``) they run about
twice as fast as fp32's, and for one query token eager attention beats the fused kernel in
bfloat16 (``benchmarks/llm_speed.py`` measures the whole). The LM head stays fp32
(``Float32Head``): bfloat16 logits would round the gaps that choose each token and the Yes - No
difference that P(Yes) reads. The copy is made once, at load: packed weights are opaque, so it
cannot be copied again, and weights changed later on the original do not reach it.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from thinkrec.llm.cpu import native_bf16

log = logging.getLogger(__name__)

DECODE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
AUTO = "auto"  # bfloat16 where the CPU multiplies it natively, else float32


def decode_dtype_here(name: str) -> str:
    """The dtype ``llm.decode_dtype`` stands for on this CPU. "auto" is bfloat16 with native bfloat16 and
    float32 without: on an AVX2-only CPU emulated bfloat16 decodes about 3.5 times slower than fp32 and waits
    about 9 times longer for the first token (``benchmarks/llm_speed.py``)."""
    if name == AUTO:
        return "bfloat16" if native_bf16() else "float32"
    if name not in DECODE_DTYPES:
        raise ValueError(f"llm.decode_dtype must be {AUTO} or one of {', '.join(DECODE_DTYPES)}, not {name!r}")
    return name


def can_pack(tensor: torch.Tensor) -> bool:
    """Whether oneDNN can pack this weight here (a CPU build with oneDNN, and native bfloat16 for a bfloat16 one)."""
    return tensor.device.type == "cpu" and torch.backends.mkldnn.is_available() and \
        hasattr(torch.ops.mkldnn, "_linear_pointwise") and (tensor.dtype != torch.bfloat16 or native_bf16())


class PackedLinear(nn.Module):
    """``nn.functional.linear`` with a weight oneDNN has packed once: the same products, faster on few rows."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self.out_features = weight.shape[0]
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)  # opaque: kept out of the state
        self.bias = None if bias is None else bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), self.packed, self.bias, "none", [], "")
        return flat.reshape(*x.shape[:-1], self.out_features)


class Float32Head(nn.Module):
    """An LM head that multiplies hidden states by fp32 weights in fp32, also under autocast."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        weight = weight.detach().float()
        bias = None if bias is None else bias.detach().float()
        self.linear = PackedLinear(weight, bias) if can_pack(weight) else None
        self.weight, self.bias = weight, bias

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            hidden = hidden.float()
            return self.linear(hidden) if self.linear is not None else nn.functional.linear(hidden, self.weight,
                                                                                             self.bias)


def pack_linears(module: nn.Module) -> None:
    """Replace every bfloat16 ``nn.Linear`` under ``module`` by a ``PackedLinear`` (PEFT's small LoRA layers
    stay as they are: PEFT reads their weights)."""
    for name, child in list(module.named_children()):
        if name.startswith("lora_"):
            continue
        if isinstance(child, nn.Linear) and child.weight.dtype == torch.bfloat16 and can_pack(child.weight):
            setattr(module, name, PackedLinear(child.weight, child.bias))
        else:
            pack_linears(child)


def decoding_backbone(backbone: nn.Module, dtype: str) -> nn.Module:
    """The backbone streamed answers run on: ``backbone`` itself for "float32" (and for "auto" without native
    bfloat16), else a copy in bfloat16 with eager attention, packed weights and ``backbone``'s LM head in fp32."""
    dtype = decode_dtype_here(dtype)
    if DECODE_DTYPES[dtype] == torch.float32:
        return backbone
    if not native_bf16():
        log.warning("this CPU has no native bfloat16 (%s): streamed answers decode in emulated, unpacked bfloat16, "
                    "slower than llm.decode_dtype=float32 here", torch.backends.cpu.get_cpu_capability())
    head = backbone.get_output_embeddings()
    decoder = copy.deepcopy(backbone).to(DECODE_DTYPES[dtype]).eval()
    base = decoder.get_base_model() if hasattr(decoder, "get_base_model") else decoder
    base.set_attn_implementation("eager")
    base.set_output_embeddings(Float32Head(head.weight, getattr(head, "bias", None)))
    pack_linears(decoder)
    return decoder

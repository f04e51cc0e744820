"""What this CPU computes natively: bfloat16 needs AVX512-BF16, AVX-NE-CONVERT or AMX; on AVX2 alone oneDNN
emulates it, slower than fp32 (a 2048x576x1536 product at 10 against 65 GFLOP/s on one such machine), and it
cannot pack bfloat16 weights at all."""

from __future__ import annotations

import torch


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (oneDNN's check)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())

"""What this CPU computes natively: bfloat16 needs AVX512-BF16, AVX-NE-CONVERT or AMX; on AVX2 alone oneDNN
emulates it, slower than fp32 (a 2048x576x1536 product at 10 against 65 GFLOP/s on one such machine), and it
cannot pack bfloat16 weights at all. Which of those units oneDNN uses also decides how a bfloat16 product rounds,
so scores and answers made in bfloat16 record ``arithmetic()`` and reproduce to the last digits only where it
is the same (on one machine type a rerun gives the same bits; another type rounds apart, within the precision
bar)."""

from __future__ import annotations

import torch

UNITS = {"amx": torch.cpu._is_amx_tile_supported, "avx512_bf16": torch.cpu._is_avx512_bf16_supported,
         "avx512": torch.cpu._is_avx512_supported, "avx2": torch.cpu._is_avx2_supported}


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (oneDNN's check)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def arithmetic() -> str:
    """What decides how bfloat16 work rounds here: torch's version, the CPU units oneDNN can use, the threads."""
    units = "+".join(name for name, present in UNITS.items() if present())
    return f"torch {torch.__version__}; {units or 'no vector units'}; {torch.get_num_threads()} threads"

"""Whether bf16 autocast pays on this CPU: detected from the CPU's features, then measured.

On an AVX2-only CPU bf16 is emulated and DenseNet-121 runs about 5x slower than fp32; with AVX-512
BF16 or AMX it ran about 2x faster. Machines differ, so nothing here assumes either.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from covidviz.timing import median_seconds


def native_bf16() -> bool:
    """True when the CPU executes bf16 natively (AVX-512 BF16 or AMX tiles), or a CUDA device is in use."""
    if torch.cuda.is_available():
        return True
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def bf16_speedup(step: Callable[[bool], object], repeats: int = 3) -> float:
    """fp32 time over bf16 time for ``step(use_bf16)``; 0.0 without native bf16 (never measured: emulated
    bf16 is known to be several times slower, and a slow probe would waste minutes)."""
    if not native_bf16():
        return 0.0
    return median_seconds(lambda: step(False), repeats) / median_seconds(lambda: step(True), repeats)

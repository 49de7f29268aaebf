"""What this CPU is and offers, read from ``/proc/cpuinfo``: its model name, its feature flags, and the
instruction set its int8 kernels run on.

Engine speed depends on both, and so do an INT8 graph's numbers: oneDNN (under OpenVINO and ONNX Runtime)
picks its int8 kernels by instruction set, and kernels without VNNI multiply through 16-bit intermediates
that can saturate. The same graph labelled 7 internal-test films differently from fp32 on an AVX2-only EPYC
and 6 on one with AVX-512 VNNI, so an agreement is recorded with the kernels it was measured on.
"""

from __future__ import annotations

import functools
import platform
import re
from pathlib import Path

# oneDNN's int8 instruction sets, most capable first: (the /proc/cpuinfo flag that enables it, its name here)
INT8_KERNEL_SETS = (("amx_int8", "amx"), ("avx512_vnni", "avx512_vnni"), ("avx_vnni", "avx_vnni"),
                    ("avx512bw", "avx512"), ("avx2", "avx2"))


@functools.cache
def cpuinfo() -> str:
    """``/proc/cpuinfo``'s text, or "" where there is none (not Linux)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_fields(info: str | None = None) -> dict[str, str]:
    """The first processor's fields (``model name``, ``flags``, ``cpu family`` ...) of ``info``, by default
    this machine's."""
    info = cpuinfo() if info is None else info
    return dict(re.findall(r"^([^\t:\n]+?)\s*:\s*(.*)$", info.split("\n\n")[0], flags=re.M))


def cpu_model(info: str | None = None) -> str:
    """The CPU's model name, or what Python knows of the machine where ``/proc/cpuinfo`` names none."""
    return cpu_fields(info).get("model name") or platform.processor() or platform.machine()


def int8_kernels(info: str | None = None) -> str:
    """The instruction set this CPU's int8 kernels run on (``avx512_vnni``, ``avx2`` ...; ``other`` for a CPU
    with none of them, an ARM one for instance)."""
    flags = set(cpu_fields(info).get("flags", "").split())
    return next((name for flag, name in INT8_KERNEL_SETS if flag in flags), "other")

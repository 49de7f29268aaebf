"""What the CPU offers, read from /proc/cpuinfo: the int8 kernels an INT8 graph's agreement is recorded
with follow the CPU's most capable int8 instructions."""

from __future__ import annotations

import pytest

from covidviz.model.cpu import cpu_fields, cpu_model, int8_kernels

CPUINFO = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14\nflags\t\t: {flags}\n\nprocessor\t: 1\n"


@pytest.mark.parametrize(("flags", "kernels"), [
    ("fpu fma avx2 avx512f avx512bw avx512_vnni avx512_bf16", "avx512_vnni"),
    ("fpu fma avx2 avx512f avx512bw avx512_vnni amx_tile amx_int8", "amx"),
    ("fpu fma avx2 avx_vnni", "avx_vnni"),
    ("fpu fma avx2 avx512f avx512bw", "avx512"),
    ("fpu fma avx2", "avx2"),
    ("fpu sse2", "other"),
])
def test_int8_kernels_follow_the_cpus_int8_instructions(flags, kernels):
    assert int8_kernels(CPUINFO.format(flags=flags)) == kernels


def test_only_the_first_processor_is_read_and_an_arm_cpu_has_other_kernels():
    info = CPUINFO.format(flags="fpu avx2") + "flags\t\t: avx512_vnni\n"
    assert cpu_fields(info)["flags"] == "fpu avx2" and cpu_model(info) == "AMD EPYC 9R14"
    assert int8_kernels("processor\t: 0\nFeatures\t: fp asimd evtstrm\n") == "other"


def test_this_machine_is_read():
    assert cpu_model() and int8_kernels() in {"amx", "avx512_vnni", "avx_vnni", "avx512", "avx2", "other"}

"""The honest limit behind ``bench``: operations counted in the exported graph agree with an independent
count, the documented peak follows the published microarchitectures, and the measured peak is a real
figure from this machine."""

from __future__ import annotations

import pytest

from covidviz.model.engine import cached_onnx
from covidviz.model.predictor import Predictor
from covidviz.tools.bench import forward_flops
from covidviz.tools.peak import documented_peak, graph_flops, measured_int8_peak, measured_peak
from tests.conftest import WEIGHTS

CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
cpu family\t: {family}
model\t\t: {model}
model name\t: test CPU
cpu MHz\t\t: 2500.000
flags\t\t: fpu sse2 avx fma avx2 {extra}

processor\t: 1
"""


def test_graph_count_agrees_with_pytorchs_layer_count():
    predictor = Predictor(WEIGHTS, engine="torch")
    from_graph = graph_flops(cached_onnx(predictor.model, predictor.sidecar))
    from_hooks = forward_flops(predictor.model, predictor.input_size)
    # two independent counts (ONNX shape inference vs PyTorch forward hooks) of the same convolutions
    assert from_graph == pytest.approx(from_hooks, rel=0.01)
    assert from_graph > 1e8


@pytest.mark.parametrize(("vendor", "family", "model", "extra", "per_cycle_per_core"), [
    ("AuthenticAMD", 23, 1, "", 16),          # Zen: two 128-bit FMA pipes
    ("AuthenticAMD", 23, 49, "", 32),         # Zen 2 (EPYC Rome, model 0x31)
    ("AuthenticAMD", 25, 17, "avx512f", 32),  # Zen 4 (Genoa): AVX-512 on two 256-bit pipes
    ("AuthenticAMD", 26, 2, "avx512f", 64),   # Zen 5
    ("GenuineIntel", 6, 143, "avx512f", 64),  # Sapphire Rapids: two 512-bit FMA pipes
])
def test_documented_peak_follows_the_microarchitecture(vendor, family, model, extra, per_cycle_per_core):
    info = CPUINFO.format(vendor=vendor, family=family, model=model, extra=extra)
    peak = documented_peak(2, info)
    assert peak.gflop_per_s == pytest.approx(2 * per_cycle_per_core * 2.5)
    assert f"{peak.gflop_per_s:.0f} GFLOP/s" in peak.describe()


def test_an_unknown_cpu_has_no_documented_peak():
    assert documented_peak(2, CPUINFO.format(vendor="HygonGenuine", family=24, model=1, extra="")) is None
    assert documented_peak(2, "no fields at all") is None


def test_measured_peak_is_the_best_of_several_products():
    rate, where = measured_peak(threads=1)
    assert rate > 1.0 and ("PyTorch" in where or "ONNX Runtime" in where)


def test_int8_peak_is_measured_on_integer_products():
    rate, where = measured_int8_peak(threads=1)
    assert rate > 1.0 and "MatMulInteger" in where


"""How fast this CPU can possibly run the network: the honest denominator for ``bench``'s "limit" line.

Two independent figures, so that each checks the other:

- **measured**: the best dense matrix product over several sizes, on PyTorch's BLAS and on ONNX Runtime's
  MLAS, at the bench's thread count. A single 2048² product is not the machine's peak (an engine was once
  measured at 0.61x of such a "limit", which a limit cannot allow); the best of many is much closer.
- **documented**: cores x fp32 SIMD lanes x 2 (a fused multiply-add is two operations) x FMA pipes x the
  reported clock, from the CPU's published microarchitecture. The reported clock is the base clock: with
  boost, a measured figure can exceed it, and ``bench`` says so rather than hiding it.

The network's operations are counted from the exported ONNX graph (:func:`graph_flops`), not from PyTorch
hooks, so every engine that runs that graph is measured against the same count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from covidviz.model.cpu import cpu_fields
from covidviz.timing import best_seconds

GEMM_SIZES = (256, 512, 1024, 2048)


@dataclass(frozen=True)
class DocumentedPeak:
    """The CPU's fp32 peak from its published microarchitecture, with the facts it rests on."""

    gflop_per_s: float
    cores: int
    lanes: int
    fma_pipes: int
    ghz: float
    microarchitecture: str

    def describe(self) -> str:
        return (f"{self.cores} cores x {self.lanes} fp32 lanes x 2 (FMA) x {self.fma_pipes} FMA pipes x "
                f"{self.ghz:.2f} GHz ({self.microarchitecture}) = {self.gflop_per_s:.0f} GFLOP/s")


def graph_flops(onnx_model: bytes) -> float:
    """Floating-point operations of one image's forward pass, counted from the ONNX graph: 2 per
    multiply-add of every Conv, Gemm and MatMul, with shapes from ONNX's own shape inference at batch 1.
    Normalisation, pooling and activations are a few percent and left out, as every published count does."""
    import onnx
    from onnx import shape_inference

    model = onnx.load_from_string(onnx_model)
    for tensor in model.graph.input:  # batch 1: the dynamic axis would leave shapes symbolic
        dim = tensor.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_param")
        dim.dim_value = 1
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*model.graph.value_info, *model.graph.output, *model.graph.input)}
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    total = 0.0
    for node in model.graph.node:
        out = shapes.get(node.output[0])
        if not out:
            continue
        if node.op_type == "Conv":
            weight = shapes[node.input[1]]  # out_channels x in_channels/groups x kh x kw
            total += 2.0 * float(np.prod(out)) * float(np.prod(weight[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            inner = shapes[node.input[1]][0]
            total += 2.0 * float(np.prod(out)) * inner
    return total


def measured_peak(threads: int) -> tuple[float, str]:
    """The best fp32 GFLOP/s of a square matrix product over :data:`GEMM_SIZES`, on PyTorch and on ONNX
    Runtime, with ``threads`` threads (each size's fastest of 10 calls); and which one it was."""
    import torch

    best, where = 0.0, ""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for n in GEMM_SIZES:
            a, b = torch.rand(n, n), torch.rand(n, n)
            rate = 2.0 * n ** 3 / best_seconds(lambda a=a, b=b: a @ b) / 1e9
            if rate > best:
                best, where = rate, f"PyTorch {n}x{n}"
    finally:
        torch.set_num_threads(previous)
    for n in GEMM_SIZES:
        run = _onnx_matmul(n, threads)
        if run is None:
            break
        rate = 2.0 * n ** 3 / best_seconds(run) / 1e9
        if rate > best:
            best, where = rate, f"ONNX Runtime {n}x{n}"
    return best, where


def measured_int8_peak(threads: int) -> tuple[float, str] | None:
    """The best int8 GOP/s (2 per multiply-add, as for fp32) of ONNX Runtime's ``MatMulInteger`` (uint8 x int8
    into int32, MLAS's quantised kernels: VNNI where the CPU has it) over :data:`GEMM_SIZES`; None without
    ONNX Runtime."""
    best, where = 0.0, ""
    for n in GEMM_SIZES:
        run = _onnx_matmul(n, threads, integer=True)
        if run is None:
            return None
        rate = 2.0 * n ** 3 / best_seconds(run) / 1e9
        if rate > best:
            best, where = rate, f"ONNX Runtime MatMulInteger {n}x{n}"
    return best, where


def _onnx_matmul(n: int, threads: int, integer: bool = False):
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    if integer:
        inputs = [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n]),
                  helper.make_tensor_value_info("b", TensorProto.INT8, [n, n])]
        node, out_type = helper.make_node("MatMulInteger", ["a", "b"], ["c"]), TensorProto.INT32
    else:
        inputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in "ab"]
        node, out_type = helper.make_node("MatMul", ["a", "b"], ["c"]), TensorProto.FLOAT
    graph = helper.make_graph([node], "gemm", inputs, [helper.make_tensor_value_info("c", out_type, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    if integer:
        feeds = {"a": rng.integers(0, 256, (n, n), dtype=np.uint8), "b": rng.integers(-128, 128, (n, n), dtype=np.int8)}
    else:
        feeds = {x: rng.random((n, n), dtype=np.float32) for x in "ab"}
    return lambda: session.run(None, feeds)


def documented_peak(cores: int, cpuinfo: str | None = None) -> DocumentedPeak | None:
    """The fp32 peak that the CPU's published microarchitecture allows on ``cores`` cores at the reported
    clock, or None for a CPU this table does not know (then ``bench`` shows the measured figure alone)."""
    field = cpu_fields(cpuinfo)
    flags = set(field.get("flags", "").split())
    try:
        family, model, mhz = int(field["cpu family"]), int(field["model"]), float(field["cpu MHz"])
    except (KeyError, ValueError):
        return None
    vendor = field.get("vendor_id", "")
    if "fma" not in flags or "avx2" not in flags:
        return None
    if vendor == "AuthenticAMD":
        # Zen/Zen+ split a 256-bit FMA into two 128-bit halves; Zen 2-4 have two 256-bit FMA pipes (Zen 4 runs
        # AVX-512 on them in two halves); Zen 5 has two full 512-bit pipes
        if family == 0x17 and model < 0x30:
            lanes, pipes, name = 4, 2, "AMD Zen/Zen+: two 128-bit FMA pipes"
        elif family in (0x17, 0x19):
            lanes, pipes, name = 8, 2, "AMD Zen 2-4: two 256-bit FMA pipes"
        elif family == 0x1A:
            lanes, pipes, name = (16, 2, "AMD Zen 5: two 512-bit FMA pipes") if "avx512f" in flags else \
                (8, 2, "AMD Zen 5: two 256-bit FMA pipes")
        else:
            return None
    elif vendor == "GenuineIntel":
        lanes, pipes, name = (16, 2, "Intel AVX-512, two FMA pipes (server cores)") if "avx512f" in flags else \
            (8, 2, "Intel AVX2, two 256-bit FMA pipes")
    else:
        return None
    ghz = mhz / 1000
    return DocumentedPeak(gflop_per_s=cores * lanes * 2 * pipes * ghz, cores=cores, lanes=lanes, fma_pipes=pipes,
                          ghz=ghz, microarchitecture=name)

"""Where the lung segmenter's forward pass runs: PyTorch, or ONNX Runtime on an export of the same verified
weights, by the same policy as the classifier's engine (:mod:`covidviz.model.engine`).

The segmenter runs before the classifier on every image, so its cost is part of every reading. Its export
is cached like the classifier's and checked against PyTorch before it serves: an export whose probabilities
or masks differ is refused, and PyTorch serves. It stays fp32: the crop's bounds are part of the one preprocessing
path, and an INT8 segmenter moved them enough to take the INT8 path's label agreement from 99.55% to 99.40%
(``scripts/segmenter_int8_trial.py``).
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from covidviz.lungs.network import INPUT_SIZE
from covidviz.lungs.segmenter import LungSegmenter
from covidviz.model.engine import OPSET, cached_export, configured_engine, ort_session
from covidviz.timing import interleaved_medians

log = logging.getLogger(__name__)

PROBABILITY_ATOL = 1e-4  # largest lung-probability difference an export may show against PyTorch
_lock = threading.Lock()
_served: dict[tuple[str, str, int | None], tuple[LungSegmenter, str]] = {}


def export_segmenter(segmenter: LungSegmenter) -> bytes:
    """The segmenter as ONNX: input ``image`` (N x 1 x 256 x 256, standardised), output ``lungs`` (N x 256 x
    256 probabilities), dynamic batch; the same TorchScript exporter as the classifier's."""
    import copy
    import warnings

    import torch

    class Probabilities(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.model(x)).squeeze(1)

    wrapper = Probabilities(copy.deepcopy(segmenter.model).float().to(memory_format=torch.contiguous_format)).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (torch.zeros(1, 1, INPUT_SIZE, INPUT_SIZE),), buffer, input_names=["image"],
                          output_names=["lungs"], dynamic_axes={"image": {0: "batch"}, "lungs": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    return buffer.getvalue()


def segmenter_export_key(segmenter: LungSegmenter) -> dict[str, Any]:
    """What the segmenter's cached export depends on: its verified weights and every version involved."""
    import onnxruntime
    import torch
    return {"segmenter_sha256": segmenter.sha256, "input_size": INPUT_SIZE, "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "opset": OPSET}


def segmenter_onnx(segmenter: LungSegmenter) -> bytes:
    """The cached export of this verified segmenter (keyed by its sha256 and every version it depends on)."""
    return cached_export(segmenter_export_key(segmenter), lambda: export_segmenter(segmenter))


def onnx_probabilities(onnx_model: bytes, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The segmenter's forward pass (standardised N x 1 x 256 x 256 in, N x 256 x 256 probabilities out) on an
    ONNX Runtime session of ``onnx_model``."""
    session = ort_session(onnx_model, threads)

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(["lungs"], {"image": np.ascontiguousarray(batch, dtype=np.float32)})[0]

    return run


def probe_input(n: int = 2) -> np.ndarray:
    """A fixed standardised segmenter batch with lung-like structure (two dark ovals on a brighter body), so
    that the agreement check compares masks that are neither empty nor full."""
    yy, xx = np.mgrid[:INPUT_SIZE, :INPUT_SIZE] / INPUT_SIZE
    body = 0.8 - 0.5 * (((xx - 0.3) / 0.13) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1) \
        - 0.5 * (((xx - 0.7) / 0.13) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1)
    rng = np.random.default_rng(0)
    batch = body[None, None] + 0.05 * rng.standard_normal((n, 1, INPUT_SIZE, INPUT_SIZE))
    batch = (batch - batch.mean(axis=(1, 2, 3), keepdims=True)) / batch.std(axis=(1, 2, 3), keepdims=True)
    return batch.astype(np.float32)


def serve_segmenter(segmenter: LungSegmenter, choice: str | None = None, threads: int | None = None
                    ) -> tuple[LungSegmenter, str]:
    """The segmenter on the engine ``choice`` implies, and a line saying which and why.

    ``torch`` (and bf16, which the caller passes as ``torch``) keeps PyTorch. Every other choice exports to
    ONNX Runtime; it serves when its probabilities agree with PyTorch's within :data:`PROBABILITY_ATOL` on
    the probe and, for ``auto``, when it is also the faster at batch 1 here. Built once per process."""
    choice = configured_engine(choice)
    key = (choice, segmenter.sha256, threads)
    with _lock:
        if key not in _served:
            _served[key] = _serve(segmenter, choice, threads)
        served, line = _served[key]
    return (served if served.sidecar == segmenter.sidecar else served.with_record(segmenter.sidecar)), line


def _serve(segmenter: LungSegmenter, choice: str, threads: int | None) -> tuple[LungSegmenter, str]:
    if choice == "torch":
        return segmenter, "lung segmenter on PyTorch fp32 (the classifier's engine was chosen as PyTorch)"
    try:
        run = onnx_probabilities(segmenter_onnx(segmenter), threads)
    except ImportError:
        return segmenter, "lung segmenter on PyTorch fp32 (ONNX Runtime is not installed)"
    probe = probe_input(1)
    reference = segmenter.torch_probabilities(probe)
    difference = float(np.abs(run(probe) - reference).max())
    if difference > PROBABILITY_ATOL:
        log.error("the segmenter's ONNX Runtime export disagrees with PyTorch (max probability difference %.2e): "
                  "not serving it", difference)
        return segmenter, f"lung segmenter on PyTorch fp32 (ONNX Runtime disagreed by {difference:.1e})"
    agreement = f"max probability difference to PyTorch {difference:.1e}"
    if choice != "auto":
        return segmenter.served_by("onnxruntime", run), f"lung segmenter on ONNX Runtime fp32 ({agreement})"
    one = probe[:1]
    times = interleaved_medians({"onnxruntime": lambda: run(one),
                                 "torch": lambda: segmenter.torch_probabilities(one)}, repeats=5)
    measured = f"ONNX Runtime {times['onnxruntime'] * 1000:.0f} ms, PyTorch {times['torch'] * 1000:.0f} ms"
    if times["onnxruntime"] >= times["torch"]:
        return segmenter, f"lung segmenter on PyTorch fp32, the faster here at batch 1 ({measured})"
    return (segmenter.served_by("onnxruntime", run),
            f"lung segmenter on ONNX Runtime fp32, the faster here at batch 1 ({measured}; {agreement})")


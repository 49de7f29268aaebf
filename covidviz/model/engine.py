"""Where the classifier's forward pass runs: PyTorch eager, or ONNX Runtime on an export of the same
verified weights. Chosen by measuring both on this CPU, not by assuming either is faster.

Every engine returns the logits and the last feature map (the output of ``features``, before the head's
ReLU), so the one-pass Grad-CAM of all three classes (:mod:`covidviz.explain.cam.fast_gradcam`) works on
any of them. The ONNX model is exported from the weights the predictor has already verified, cached under
:func:`covidviz.paths.cache_dir` beside a record of its own sha256, and checked against PyTorch on a probe
batch before it serves: a stale, altered or wrong export is rebuilt or refused, never used. torch loads only
where PyTorch runs or exports: an engine built from a cached export (:mod:`covidviz.model.serving_plan`) does
without it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from covidviz.model.forward_pass import ENGINES, Engine, ForwardPass, torch_threads
from covidviz.paths import cache_dir
from covidviz.timing import interleaved_medians

if TYPE_CHECKING:
    from covidviz.model.network import GapClassifier

log = logging.getLogger(__name__)

OPSET = 17
AGREEMENT_ATOL = 1e-3  # largest logit difference an export may show against PyTorch on the probe batch


class TorchEngine:
    """PyTorch eager, channels_last; ``bf16`` autocast only where the CPU runs bf16 natively."""

    def __init__(self, model: GapClassifier, bf16: bool = False) -> None:
        import torch

        from covidviz.model.precision import native_bf16
        if bf16 and not native_bf16():
            raise ValueError("bf16 was asked for, but this CPU has no native bf16 (it would run several times "
                             "slower than fp32): use fp32")
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.bf16 = bf16
        self.name = "torch-bf16" if bf16 else "torch"

    def run(self, batch: np.ndarray) -> ForwardPass:
        import torch
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            feature_map = self.model.features(x)
            logits = self.model.head(feature_map)
        return ForwardPass(logits=logits.float().numpy(), feature_map=feature_map.float().numpy())


class OnnxRuntimeEngine:
    """ONNX Runtime's CPU engine on an fp32 export (graph optimisations on, one session shared by all
    threads: ``InferenceSession.run`` is thread-safe)."""

    name = "onnxruntime"

    def __init__(self, onnx_model: bytes, threads: int | None = None) -> None:
        self.session = ort_session(onnx_model, threads)

    def run(self, batch: np.ndarray) -> ForwardPass:
        logits, feature_map = self.session.run(["logits", "feature_map"],
                                               {"image": np.ascontiguousarray(batch, dtype=np.float32)})
        return ForwardPass(logits=logits, feature_map=feature_map)


def ort_session(onnx_model: bytes, threads: int | None = None):
    """An ONNX Runtime CPU session with every graph optimisation, ``threads`` intra-op threads (default
    torch's, so both engines are measured on equal terms) and one inter-op thread.

    Its threads sleep when idle instead of spinning. A reading runs the segmenter's session and then the
    classifier's, with numpy between them, on cores the web server shares: spinning threads of one session
    took the cores from the next. Measured on 2 cores for one 7 MB DICOM: 185 ms a reading against 250 ms
    spinning, for 3-6 ms lost at batch 1 when a session runs alone and nothing at batch 32."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])


def export_onnx(model: GapClassifier, size: int) -> bytes:
    """The model as ONNX with a dynamic batch axis and two outputs, ``logits`` and ``feature_map``.

    TorchScript's exporter, not the torch.export-based default: measured here, 2 s against 25 s for the
    same graph (equal outputs to 1e-6), and it needs no onnxscript. torch is pinned, and the cache key
    carries its version, so a torch that drops this exporter fails loudly in the tests, not silently."""
    import copy
    import warnings

    import torch

    class LogitsAndFeatures(torch.nn.Module):
        def __init__(self, model: GapClassifier) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            feature_map = self.model.features(x)
            return self.model.head(feature_map), feature_map

    wrapper = LogitsAndFeatures(copy.deepcopy(model).float().to(memory_format=torch.contiguous_format)).eval()
    buffer = io.BytesIO()
    dynamic = {name: {0: "batch"} for name in ("image", "logits", "feature_map")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(wrapper, (torch.zeros(1, 3, size, size),), buffer, input_names=["image"],
                          output_names=["logits", "feature_map"], dynamic_axes=dynamic, opset_version=OPSET,
                          dynamo=False)
    return buffer.getvalue()


def export_key(sidecar: dict[str, Any]) -> dict[str, Any]:
    """What the classifier's cached export depends on: its verified weights and every version involved."""
    import onnxruntime
    import torch
    return {"weights_sha256": sidecar["weights_sha256"], "input_size": int(sidecar["input_size"]),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "opset": OPSET}


def cached_onnx(model: GapClassifier, sidecar: dict[str, Any], directory: Path | None = None) -> bytes:
    """The ONNX export of these verified weights: from the cache when its record matches them and the file's
    sha256 matches the record, else exported anew (about 2 s) and cached. A cache that cannot be written
    costs only the export."""
    key = export_key(sidecar)
    return cached_export(key, lambda: export_onnx(model, key["input_size"]), directory)


def cached_export(key: dict[str, Any], export: Callable[[], bytes] | None, directory: Path | None = None
                  ) -> bytes | None:
    """``export()``'s bytes, cached under ``directory`` (default the cache's ``onnx`` folder) by ``key``
    (which names the verified weights and every version the bytes depend on) beside a record of their
    sha256: a stale or altered entry is exported again, never used. ``export=None`` only looks: None where
    there is no matching entry."""
    directory = directory or cache_dir() / "onnx"
    stem = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    path, record = directory / f"{stem}.onnx", directory / f"{stem}.json"
    try:
        if path.is_file() and record.is_file():
            data, saved = path.read_bytes(), json.loads(record.read_text())
            if saved.get("key") == key and saved.get("sha256") == hashlib.sha256(data).hexdigest():
                return data
            log.warning("ONNX cache entry %s does not match its record: exporting again", path.name)
    except (OSError, ValueError):
        log.warning("ONNX cache entry %s is unreadable: exporting again", path.name)
    if export is None:
        return None
    data = export()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        record.write_text(json.dumps({"key": key, "sha256": hashlib.sha256(data).hexdigest()}, indent=2))
    except OSError as exc:
        log.warning("could not cache the ONNX export (%s); it will be exported again next time", exc.strerror)
    return data


def probe_batch(size: int, n: int = 2) -> np.ndarray:
    """A fixed standardised batch for agreement checks and speed probes."""
    return np.random.default_rng(0).standard_normal((n, 3, size, size)).astype(np.float32)


def max_logit_difference(a: Engine, b: Engine, batch: np.ndarray) -> float:
    return float(np.abs(a.run(batch).logits - b.run(batch).logits).max())


def configured_engine(choice: str | None = None) -> str:
    """``choice``, else ``COVIDVIZ_ENGINE``, else ``auto``. Pinning one engine makes every process of a
    deployment (dashboard, CLI, batch workers) serve from the same one, instead of each measuring its own."""
    import os
    return choice or os.environ.get("COVIDVIZ_ENGINE") or "auto"


_lock = threading.Lock()
_built: dict[tuple[str, str, int | None], tuple[Engine, str]] = {}


def build_engine(choice: str | None, model: GapClassifier, sidecar: dict[str, Any], bf16: bool = False,
                 threads: int | None = None, weights_dir: Path | None = None) -> tuple[Engine, str]:
    """The engine for ``choice`` (one of :data:`ENGINES`) and a line saying what was chosen and why.

    ``auto``: the fastest at batch 1 here of the exact engines that agree with PyTorch on the probe batch;
    INT8 only where the deployment allows it (``COVIDVIZ_ALLOW_INT8=1``) and the INT8 graph's recorded
    agreement meets the floor. ``bf16`` (approximate) always means PyTorch with bf16 autocast. Engines are
    built once per process and weights."""
    choice = configured_engine(choice)
    if choice not in ENGINES:
        raise ValueError(f"unknown engine {choice!r}: choose one of {', '.join(ENGINES)}")
    key = (choice if not bf16 else "bf16", sidecar["weights_sha256"], threads)
    with _lock:
        if key not in _built:
            _built[key] = _build(choice, model, sidecar, bf16, threads, weights_dir)
        return _built[key]


def _exact(name: str, model: GapClassifier, sidecar: dict[str, Any], threads: int | None) -> Engine:
    if name == "onnxruntime":
        return OnnxRuntimeEngine(cached_onnx(model, sidecar), threads)
    from covidviz.model.openvino_engine import OpenVinoEngine
    return OpenVinoEngine.from_onnx(cached_onnx(model, sidecar), threads)


LABELS = {"torch": "PyTorch", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}
# ``auto`` keeps ONNX Runtime, which the lung segmenter runs on, unless another exact engine is faster by more
# than this factor at batch 1: OpenVINO beside it cost the server 85 MB idle and 67-99 MB at the load test's peak
# (2026-12-04, AVX-512 EPYC) for 1 ms of a reading that takes about 150 ms
HOUSE_RUNTIME_MARGIN = 1.15


def pick_exact(times: dict[str, float]) -> str:
    """``auto``'s pick among exact engines timed at batch 1: the fastest, except that ONNX Runtime stays
    within :data:`HOUSE_RUNTIME_MARGIN` of it."""
    fastest = min(times, key=times.get)
    house = times.get("onnxruntime", float("inf"))
    return "onnxruntime" if house <= times[fastest] * HOUSE_RUNTIME_MARGIN else fastest


def _build(choice: str, model: GapClassifier, sidecar: dict[str, Any], bf16: bool, threads: int | None,
           weights_dir: Path | None) -> tuple[Engine, str]:
    reference = TorchEngine(model)
    if bf16:
        return TorchEngine(model, bf16=True), "PyTorch with bf16 autocast (this CPU runs bf16 natively)"
    if choice == "torch":
        return reference, "PyTorch fp32 (chosen explicitly)"
    if choice == "openvino-int8" or (choice == "auto" and weights_dir is not None):
        int8 = _int8(choice, model, sidecar, threads, weights_dir)
        if int8 is not None:
            return int8
    size = int(sidecar["input_size"])
    candidates: dict[str, Engine] = {}
    notes: list[str] = []
    for name in (("onnxruntime", "openvino") if choice == "auto" else (choice,)):
        try:
            engine = _exact(name, model, sidecar, threads)
        except ImportError:
            if choice == name:
                raise ValueError(f"{LABELS[name]} is not installed: pip install -r requirements.txt") from None
            notes.append(f"{LABELS[name]} is not installed")
            continue
        difference = max_logit_difference(reference, engine, probe_batch(size))
        if difference > AGREEMENT_ATOL:
            log.error("%s disagrees with PyTorch (max logit difference %.2e): not serving it", LABELS[name], difference)
            notes.append(f"{LABELS[name]} disagreed with PyTorch by {difference:.1e}")
            continue
        if choice == name:
            return engine, f"{LABELS[name]} fp32 (chosen explicitly; max logit difference to PyTorch {difference:.1e})"
        candidates[name] = engine
    if not candidates:
        return reference, f"PyTorch fp32 ({'; '.join(notes) or 'no other engine'})"
    one = probe_batch(size, 1)
    candidates["torch"] = reference
    times = interleaved_medians({name: (lambda e=e: e.run(one)) for name, e in candidates.items()}, repeats=5)
    winner = pick_exact(times)
    measured = ", ".join(f"{LABELS[n]} {t * 1000:.0f} ms" for n, t in times.items())
    extra = f"; {'; '.join(notes)}" if notes else ""
    if winner != min(times, key=times.get):
        return candidates[winner], (
            f"ONNX Runtime fp32, within {HOUSE_RUNTIME_MARGIN - 1:.0%} of the fastest exact engine at batch 1 here "
            f"({measured}) and already loaded for the lung segmenter: a second runtime would cost the server "
            f"memory for less than that{extra}")
    return candidates[winner], f"{LABELS[winner]} fp32, the fastest exact engine measured here at batch 1 ({measured}){extra}"


def _int8(choice: str, model: GapClassifier, sidecar: dict[str, Any], threads: int | None,
          weights_dir: Path | None) -> tuple[Engine, str] | None:
    """The INT8 engine when asked for by name (else a ValueError why not), or for ``auto`` where the
    deployment allows it and its recorded agreement meets the floor under the model's decision rule (else None:
    ``auto`` stays exact)."""
    from covidviz.model.openvino_engine import (
        INT8_AGREEMENT_FLOOR,
        allow_int8,
        int8_engine,
        int8_record,
        measured_agreement,
        under_the_models_rule,
    )
    if choice == "auto":
        if not allow_int8():
            return None
        record = int8_record(weights_dir, sidecar)
        measured = record and measured_agreement(record)
        agreement = measured and measured["internal_test"]["label_agreement"]
        if not agreement or agreement < INT8_AGREEMENT_FLOOR:
            log.warning("INT8 is allowed, but its agreement measured with this CPU's int8 kernels (%s) is not "
                        "at least %.3f: serving fp32", agreement, INT8_AGREEMENT_FLOOR)
            return None
        if not under_the_models_rule(measured, sidecar):
            log.warning("INT8 is allowed, but its agreement was measured under another decision rule (COVID-19 "
                        "threshold %s): serving fp32 until `python -m covidviz quantise --measure` measures it "
                        "under the model's", measured.get("covid_threshold", "not recorded"))
            return None
    if weights_dir is None:
        raise ValueError("the INT8 engine needs the weights folder its graph lies in")
    try:
        return int8_engine(weights_dir, sidecar, cached_onnx(model, sidecar), threads)
    except ImportError:
        raise ValueError("OpenVINO is not installed: pip install -r requirements.txt") from None

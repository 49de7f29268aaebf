"""OpenVINO's CPU engine: fp32 on the same ONNX export ONNX Runtime serves, and INT8 on a graph NNCF
quantised offline (``python -m covidviz quantise``).

fp32 is exact (checked against PyTorch on the probe batch like every exact engine). INT8 is not: it is
offered only by name, or by ``auto`` where a deployment allows it (``COVIDVIZ_ALLOW_INT8=1``) *and* the
quantised graph's record holds an agreement with fp32, measured under the model's decision rule, that meets
:data:`INT8_AGREEMENT_FLOOR`.
The quantisation record (``weights/int8/quantisation.json``) names the fp32 weights it was quantised from, so a record for
other weights is refused, never served.

An INT8 graph's numbers depend on the int8 kernels the CPU runs it with (:func:`covidviz.model.cpu.int8_kernels`),
so its agreement is recorded per kernel set (``python -m covidviz quantise --measure`` adds this CPU's), and
only the measurement for this CPU's kernels admits the graph or is shown with it.

The one-pass Grad-CAM reads the engine's feature map. An INT8 feature map is an approximation of fp32's, so
:class:`Int8Engine` keeps the fp32 graph beside the INT8 one for the heatmaps, unless the record shows the
INT8 maps within :data:`MAP_TOLERANCE` of fp32's: maps stay exact either way, and the engine's note says
which it is. Scoring without maps (``predict``, ``batch``) runs the INT8 graph alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from covidviz.errors import WeightsError
from covidviz.model.cpu import int8_kernels
from covidviz.model.forward_pass import ForwardPass, torch_threads
from covidviz.verified import sha256_of

INT8_SUBDIR = "int8"
INT8_MODEL = "classifier.xml"
INT8_RECORD = "quantisation.json"  # what it was quantised from, the sha256 of its files, its measured agreement
INT8_AGREEMENT_FLOOR = 0.995  # label agreement with fp32 on internal test, under the shipped decision rule
MAP_TOLERANCE = 0.02  # largest |difference| of normalised one-pass Grad-CAM maps that still counts as exact
MAP_FILMS = 64  # internal-test films whose maps are compared (maps cost little; 64 shows the spread)


def allow_int8() -> bool:
    """Whether this deployment lets ``auto`` serve INT8 (``COVIDVIZ_ALLOW_INT8=1``); off by default."""
    return os.environ.get("COVIDVIZ_ALLOW_INT8", "") == "1"


def compiled(model: Any, threads: int | None) -> Any:
    """An OpenVINO model compiled for the CPU on ``threads`` threads (latency hint: one request at a time
    per caller, which is how the predictor calls it)."""
    import openvino as ov
    config = {"INFERENCE_NUM_THREADS": threads or torch_threads(), "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_PRECISION_HINT": "f32"}  # never a silent bf16/fp16 downcast on CPUs that offer one
    return ov.Core().compile_model(model, "CPU", config)


class OpenVinoEngine:
    """OpenVINO on an fp32 ONNX export (exact) or on an NNCF INT8 graph."""

    def __init__(self, model: Any, threads: int | None = None, name: str = "openvino") -> None:
        self.name = name
        self.model = compiled(model, threads)
        self.request_outputs = [self.model.output("logits"), self.model.output("feature_map")]

    @classmethod
    def from_onnx(cls, onnx_model: bytes, threads: int | None = None) -> OpenVinoEngine:
        import openvino as ov
        return cls(ov.Core().read_model(onnx_model), threads)

    def run(self, batch: np.ndarray) -> ForwardPass:
        # a fresh infer request per call: compiled_model(...) shares one request, which is not thread-safe
        request = self.model.create_infer_request()
        result = request.infer({"image": np.ascontiguousarray(batch, dtype=np.float32)})
        return ForwardPass(logits=np.array(result[self.request_outputs[0]]),
                           feature_map=np.array(result[self.request_outputs[1]]))


class Int8Engine:
    """One INT8 pass gives the logits and the feature map the probabilities and the OOD guard read. ``exact``
    is the fp32 graph that draws the heatmaps instead (see :meth:`Predictor.forward_for_maps`), unless the
    record shows INT8's maps within :data:`MAP_TOLERANCE` of fp32's; then it is None."""

    def __init__(self, int8: OpenVinoEngine, exact: OpenVinoEngine | None, record: dict[str, Any]) -> None:
        self.int8, self.exact, self.record = int8, exact, record
        self.name = "openvino-int8"

    def run(self, batch: np.ndarray) -> ForwardPass:
        return self.int8.run(batch)


def int8_record_digest(weights_dir: Path) -> str | None:
    """The sha256 of the INT8 graph's record (None without one): it names the graph's files by their sha256,
    so it changes whenever ``quantise`` writes a new graph. Cheap: the graph itself is not read."""
    path = weights_dir / INT8_SUBDIR / INT8_RECORD
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def int8_record(weights_dir: Path, sidecar: dict[str, Any]) -> dict[str, Any] | None:
    """The INT8 graph's record (what it was quantised from, how well it agrees), or None when there is no
    INT8 graph beside these weights. A graph altered since it was written, or quantised from other
    weights, is refused."""
    path = weights_dir / INT8_SUBDIR / INT8_MODEL
    if not path.is_file():
        return None
    try:
        record = json.loads(path.with_name(INT8_RECORD).read_text())
        files = record["files"]
    except (OSError, ValueError, KeyError) as exc:
        raise WeightsError(f"{path.with_name(INT8_RECORD)} cannot be read ({exc.__class__.__name__}): run "
                           "`python -m covidviz quantise`") from None
    # the graph and its weights share a stem, so their hashes live in the record, not in <stem>.json files
    for name in (INT8_MODEL, Path(INT8_MODEL).with_suffix(".bin").name):
        if sha256_of(path.with_name(name)) != files.get(name):
            raise WeightsError(f"{path.with_name(name)} does not match the sha256 in its quantisation record: "
                               "it was altered or replaced; run `python -m covidviz quantise`")
    if record.get("weights_sha256") != sidecar["weights_sha256"]:
        raise WeightsError(f"{path} was quantised from weights {record.get('weights_sha256', '?')[:12]}, "
                           f"not the shipped {sidecar['weights_sha256'][:12]}: run `python -m covidviz quantise`")
    return record


def measured_agreement(record: dict[str, Any], kernels: str | None = None) -> dict[str, Any] | None:
    """The graph's agreement with fp32 as measured on CPUs with ``kernels`` (by default this CPU's int8
    kernels), or None where it was never measured on them: then nothing vouches for its labels here."""
    return record["agreement"].get(kernels or int8_kernels())


def int8_engine(weights_dir: Path, sidecar: dict[str, Any], onnx_model: bytes,
                threads: int | None = None) -> tuple[Int8Engine, str]:
    """The INT8 engine and a note that gives its measured agreement, or a :class:`ValueError` saying why
    there is none."""
    import openvino as ov
    record = int8_record(weights_dir, sidecar)
    if record is None:
        raise ValueError(f"no INT8 graph under {weights_dir / INT8_SUBDIR}: run `python -m covidviz quantise`")
    int8 = OpenVinoEngine(ov.Core().read_model(str(weights_dir / INT8_SUBDIR / INT8_MODEL)), threads,
                          name="openvino-int8")
    kernels = int8_kernels()
    measured = measured_agreement(record, kernels)
    exact_maps = measured is not None and measured["max_map_difference"] <= MAP_TOLERANCE
    fp32 = None if exact_maps else OpenVinoEngine.from_onnx(onnx_model, threads)
    maps = (f"INT8 heatmaps, within {measured['max_map_difference']:.3f} of fp32's" if exact_maps
            else "heatmaps from the fp32 graph")
    if measured is None:
        elsewhere = "; ".join(f"{a['internal_test']['label_agreement']:.2%} with {k}"
                              for k, a in record["agreement"].items()) or "nowhere"
        return Int8Engine(int8, fp32, record), (
            f"OpenVINO INT8 (approximate, and its agreement with fp32 was never measured on this CPU's int8 "
            f"kernels ({kernels}): internal-test labels agree {elsewhere}; run `python -m covidviz quantise "
            f"--measure`; {maps})")
    test = measured["internal_test"]
    return Int8Engine(int8, fp32, record), (
        f"OpenVINO INT8 (approximate: labels agree with fp32 on {test['label_agreement']:.2%} of "
        f"{test['images']} internal-test films with this CPU's {kernels} int8 kernels, largest probability "
        f"difference {test['max_probability_difference']:.3f}{earlier_rule(measured, sidecar)}; {maps})")


def under_the_models_rule(measured: dict[str, Any], sidecar: dict[str, Any]) -> bool:
    """Whether an agreement was measured under the model's decision rule: a label agreement says how often
    INT8 and fp32 give the same *label*, which depends on the COVID-19 threshold in force (refitted with every
    ``fit-decision``; rows from before they carried it say nothing)."""
    from covidviz.model.decision import rule_from_sidecar
    return measured.get("covid_threshold", object()) == rule_from_sidecar(sidecar).covid_threshold


def earlier_rule(measured: dict[str, Any], sidecar: dict[str, Any]) -> str:
    """A clause for the engine's note where the agreement was measured under another decision rule than the
    model's (its threshold refitted since, or a row from before rows carried it); empty where it was not."""
    from covidviz.model.decision import rule_from_sidecar
    if under_the_models_rule(measured, sidecar):
        return ""
    shipped = rule_from_sidecar(sidecar).covid_threshold
    at = measured.get("covid_threshold", "not recorded")
    return (f", measured under an earlier decision rule (COVID-19 threshold {at}; the model's is {shipped}): "
            "run `python -m covidviz quantise --measure`")

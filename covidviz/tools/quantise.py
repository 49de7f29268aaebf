"""``python -m covidviz quantise``: the INT8 graph for OpenVINO, with its measured agreement.

NNCF's post-training quantisation of the verified fp32 export, calibrated on validation films only (the
films the temperature and the decision rule were fitted on; never test or external ones). The result is
then measured against fp32 on every internal-test film and both external sets, under the decision rule the
product shows, and that measurement is written beside the graph (``weights/int8/quantisation.json``): the
engine's note, ``bench`` and ``auto``'s permission all read it, so nobody serves INT8 on a promise.

Options that close the agreement gap (``--ignore``, ``--bias-correction``, ``--calibration``) are NNCF's own;
each run records which were used.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from covidviz.data.collection import Record
from covidviz.evaluation.artifacts.evaluate import records_for_splits
from covidviz.explain.cam.fast_gradcam import cam_pass
from covidviz.model.cpu import cpu_model, int8_kernels
from covidviz.model.decision import ARGMAX_RULE, DecisionRule
from covidviz.model.engine import cached_onnx
from covidviz.model.forward_pass import Engine, ForwardPass
from covidviz.model.inference import softmax
from covidviz.model.openvino_engine import (
    INT8_MODEL,
    INT8_RECORD,
    INT8_SUBDIR,
    MAP_FILMS,
    OpenVinoEngine,
    int8_record,
)
from covidviz.model.predictor import Predictor
from covidviz.model.preprocessing import model_batch
from covidviz.paths import cache_dir
from covidviz.training.prepared_store import prepared_from_store
from covidviz.verified import sha256_of


def inputs(predictor: Predictor, data_dir: Path, records: list[Record]) -> np.ndarray:
    """The model's input batch for ``records``: the one preprocessing path, cached as uint8 canonical images."""
    key = predictor.segmenter.sha256[:12] if predictor.segmenter is not None else "whole-image"
    store = cache_dir() / "prepared" / f"prepared-{key}.npz"
    canonical = prepared_from_store(store, data_dir, records, predictor.segmenter).astype(np.float32) / 255
    return model_batch(canonical, predictor.input_size)


def forward(engine: Engine, batch: np.ndarray, size: int = 32) -> ForwardPass:
    passes = [engine.run(batch[i:i + size]) for i in range(0, len(batch), size)]
    return ForwardPass(logits=np.concatenate([p.logits for p in passes]),
                       feature_map=np.concatenate([p.feature_map for p in passes]))


def normalised_maps(forward_pass: ForwardPass, weight: np.ndarray) -> np.ndarray:
    """Each film's Grad-CAM maps of every class scaled to [0, 1] by their own maximum, as the page shows them."""
    maps = cam_pass(forward_pass, weight).maps
    return maps / np.maximum(maps.max(axis=(2, 3), keepdims=True), 1e-12)


def agreement(reference: np.ndarray, quantised: np.ndarray, truth: np.ndarray | None,
              rule: DecisionRule = ARGMAX_RULE) -> dict[str, Any]:
    """How far INT8 strays from fp32 on one set: label agreement under the shown rule, the largest and the
    99th-percentile probability difference, and (with the true labels) COVID-19 sensitivity and
    specificity of each."""
    ref_labels, q_labels = rule.indices(reference), rule.indices(quantised)
    difference = np.abs(reference - quantised).max(axis=1)
    out: dict[str, Any] = {"images": int(len(reference)),
                           "label_agreement": float(np.mean(ref_labels == q_labels)),
                           "disagreements": int(np.sum(ref_labels != q_labels)),
                           "max_probability_difference": float(difference.max()),
                           "p99_probability_difference": float(np.percentile(difference, 99))}
    if truth is not None:
        covid = truth == 0
        for name, labels in (("fp32", ref_labels), ("int8", q_labels)):
            called = labels == 0
            out[f"{name}_covid_sensitivity"] = float(called[covid].mean()) if covid.any() else None
            out[f"{name}_covid_specificity"] = float((~called[~covid]).mean()) if (~covid).any() else None
    return out


def quantise(weights_dir: Path, data_dir: Path, calibration: int = 300, ignore: tuple[str, ...] = (),
             bias_correction: bool = True, preset: str = "mixed", log=print) -> dict[str, Any]:
    """Quantise, measure, and write ``weights/int8/`` (graph, its sha256 records, ``quantisation.json``)."""
    import nncf
    import openvino as ov

    predictor = Predictor(weights_dir, engine="openvino")
    sets = records_for_splits(data_dir, weights_dir)
    rng = np.random.default_rng(0)
    chosen = [sets["val"][i] for i in sorted(rng.choice(len(sets["val"]), min(calibration, len(sets["val"])),
                                                        replace=False))]
    started = time.perf_counter()
    calibration_batch = inputs(predictor, data_dir, chosen)
    log(f"calibration: {len(chosen)} validation films prepared")
    fp32_graph = ov.Core().read_model(cached_onnx(predictor.model, predictor.sidecar))
    scope = nncf.IgnoredScope(patterns=list(ignore), validate=False) if ignore else None
    quantised = nncf.quantize(
        fp32_graph, nncf.Dataset([calibration_batch[i:i + 1] for i in range(len(calibration_batch))]),
        preset=nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(calibration_batch), fast_bias_correction=not bias_correction,
        **({"ignored_scope": scope} if scope else {}))
    seconds = time.perf_counter() - started
    log(f"quantised in {seconds:.0f} s")
    measured = measure(predictor, OpenVinoEngine(quantised, name="openvino-int8"), data_dir, sets, log)
    out = weights_dir / INT8_SUBDIR
    out.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantised, str(out / INT8_MODEL), compress_to_fp16=False)
    record = {"weights_sha256": predictor.sidecar["weights_sha256"], "nncf": nncf.__version__,
              "openvino": ov.__version__, "calibration": {"films": len(chosen), "from": "validation split",
                                                          "seed": 0},
              "options": {"preset": preset, "ignored_scope": list(ignore), "bias_correction": bias_correction},
              "quantise_seconds": round(seconds, 1), "decision_rule": predictor.decision.description,
              "agreement": {measured["int8_kernels"]: measured}}
    return seal(out, record)


def measure(predictor: Predictor, int8: Engine, data_dir: Path, sets: dict[str, list[Record]],
            log=print) -> dict[str, Any]:
    """INT8 against fp32 on every internal-test film and each external set, on this CPU's int8 kernels: label
    agreement under the shown decision rule, probability differences, COVID-19 sensitivity and specificity,
    the OOD guard's flags, and how far the one-pass Grad-CAM maps move."""
    from covidviz import CLASSES
    weight = predictor.classifier_weight
    temperature = predictor.temperature
    measured: dict[str, Any] = {"int8_kernels": int8_kernels(), "cpu": cpu_model(),
                                "covid_threshold": predictor.decision.covid_threshold}
    map_difference = 0.0
    for name, records in (("internal_test", sets["test"]), *(
            (f"external_{source}", [r for r in sets["external"] if r.source == source])
            for source in sorted({r.source for r in sets["external"]}))):
        batch = inputs(predictor, data_dir, records)
        reference, approximate = forward(predictor.engine, batch), forward(int8, batch)
        truth = np.array([CLASSES.index(r.label) for r in records])
        measured[name] = agreement(softmax(reference.logits, temperature), softmax(approximate.logits, temperature),
                                   truth, predictor.decision)
        if predictor.guard is not None:  # predict and batch read the OOD guard from INT8's own features
            flags = [predictor.guard.is_outlier(f.pooled) for f in (reference, approximate)]
            measured[name]["ood_flag_agreement"] = float(np.mean(flags[0] == flags[1]))
        if name == "internal_test":
            few = slice(0, MAP_FILMS)
            map_difference = float(np.abs(
                normalised_maps(ForwardPass(reference.logits[few], reference.feature_map[few]), weight)
                - normalised_maps(ForwardPass(approximate.logits[few], approximate.feature_map[few]), weight)).max())
        log(f"{name}: {measured[name]['label_agreement']:.2%} label agreement over {len(records)} films, "
            f"largest |dp| {measured[name]['max_probability_difference']:.3f} ({measured['int8_kernels']} kernels)")
    measured["max_map_difference"] = map_difference
    return measured


def measure_here(weights_dir: Path, data_dir: Path, log=print) -> dict[str, Any]:
    """Measure the shipped INT8 graph on this CPU's int8 kernels and add that to its record, beside what was
    measured on other kernels (the graph is unchanged, so its sha256 records stand)."""
    import openvino as ov
    predictor = Predictor(weights_dir, engine="openvino")
    record = int8_record(weights_dir, predictor.sidecar)
    if record is None:
        raise ValueError(f"no INT8 graph under {weights_dir / INT8_SUBDIR}: run `python -m covidviz quantise`")
    graph = ov.Core().read_model(str(weights_dir / INT8_SUBDIR / INT8_MODEL))
    measured = measure(predictor, OpenVinoEngine(graph, name="openvino-int8"), data_dir,
                       records_for_splits(data_dir, weights_dir), log)
    record["agreement"][measured["int8_kernels"]] = measured
    (weights_dir / INT8_SUBDIR / INT8_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record


def seal(out: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Write the quantisation record with the sha256 of the graph and its weights, which the engine checks
    before it serves them."""
    files = {name: sha256_of(out / name) for name in (INT8_MODEL, Path(INT8_MODEL).with_suffix(".bin").name)}
    record = {**record, "files": files}
    (out / INT8_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record

"""Which engines serve a model, decided once per machine and software and remembered, so that a server whose
engines are ONNX Runtime or OpenVINO never loads torch (torch and torchvision are about 260 MB of a server).

Choosing needs PyTorch: every export is checked against it before it serves, and ``auto`` times it beside the
other engines. A full :class:`~covidviz.model.predictor.Predictor` does that and writes the plan: the engines
chosen, the lines that say why, and the keys of the cached exports they serve from. A lean predictor reads the
plan and builds the same engines from the same verified exports; where there is no plan yet it has one made
by a short child process (``python -m covidviz engines``), whose memory goes back to the system when it ends.

The plan's key holds everything the choice depends on: the classifier's and segmenter's weights, the engine
asked for, the thread count, the INT8 permission, every engine's version and the CPU. A change of any of them
means a new plan, measured again; a plan whose exports are gone or altered is not used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from covidviz.model.cpu import cpuinfo
from covidviz.model.engine import cached_export, configured_engine
from covidviz.model.forward_pass import Engine
from covidviz.model.openvino_engine import allow_int8, int8_record_digest
from covidviz.paths import cache_dir

log = logging.getLogger(__name__)

LEAN_ENGINES = ("onnxruntime", "openvino", "openvino-int8")  # the classifier engines that need no torch to serve
PLAN_TIMEOUT_S = 600
CHOICE_POLICY = 2  # raised whenever the way ``auto`` chooses changes, so older plans are weighed afresh


def cpu_signature() -> str:
    """The CPU's model name and feature flags, hashed: engine speed depends on both."""
    info = cpuinfo() or platform.processor() or platform.machine()
    lines = [line for line in info.splitlines() if line.startswith(("model name", "flags", "Features"))]
    return hashlib.sha256("\n".join(dict.fromkeys(lines)).encode()).hexdigest()[:16]


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def serving_threads() -> int:
    """The threads a lean server's engines use: ``OMP_NUM_THREADS``, else every CPU this process may run on."""
    return int(os.environ.get("OMP_NUM_THREADS") or 0) or len(os.sched_getaffinity(0))


def plan_key(sidecar: dict[str, Any], choice: str | None, threads: int, weights_dir: Path) -> dict[str, Any]:
    """Everything the engines chosen for these weights depend on; ``threads``: what every engine runs on. The
    INT8 graph's record is part of it: a graph quantised (again) after the plan was made is weighed afresh."""
    return {"policy": CHOICE_POLICY, "weights_sha256": sidecar["weights_sha256"],
            "segmenter_sha256": sidecar.get("preprocessing", {}).get("lung_segmenter_sha256"),
            "engine": configured_engine(choice), "threads": threads, "allow_int8": allow_int8(),
            "int8_record_sha256": int8_record_digest(weights_dir),
            "versions": {p: _version(p) for p in ("torch", "onnxruntime", "openvino")},
            "cpu": cpu_signature(), "cpus": len(os.sched_getaffinity(0))}


def plan_path(key: dict[str, Any]) -> Path:
    return cache_dir() / "plans" / (hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24] + ".json")


def write_plan(key: dict[str, Any], plan: dict[str, Any]) -> None:
    """Remember a full predictor's choice. A cache that cannot be written costs only the next start's choosing."""
    path = plan_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": key, **plan}, indent=2) + "\n")
        tmp.replace(path)
    except OSError as exc:
        log.warning("could not record the serving plan (%s)", exc.strerror)


def read_plan(key: dict[str, Any]) -> dict[str, Any] | None:
    try:
        plan = json.loads(plan_path(key).read_text())
    except (OSError, ValueError):
        return None
    return plan if plan.get("key") == key else None


def make_plan(weights_dir: Path, choice: str | None, threads: int) -> bool:
    """Have a child process choose the engines for ``weights_dir`` on ``threads`` threads (it imports torch;
    this process does not) and record its plan. False, with the reason logged, when it could not."""
    command = [sys.executable, "-m", "covidviz", "engines", "--weights", str(weights_dir),
               "--engine", configured_engine(choice), "--threads", str(threads)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PLAN_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("choosing the engines in a child process failed (%s)", exc.__class__.__name__)
        return False
    if done.returncode != 0:
        log.warning("choosing the engines in a child process failed: %s", done.stderr.strip().splitlines()[-1:])
        return False
    return True


def ensure_plan(weights_dir: Path, threads: int, choice: str | None = None) -> bool:
    """Make this machine's plan for ``weights_dir`` on ``threads`` threads unless it exists (before starting
    workers that would each make it at once). False when it could not be made: each then chooses for itself."""
    from covidviz.model.weights import verified_sidecar
    key = plan_key(verified_sidecar(weights_dir), choice, threads, weights_dir)
    return read_plan(key) is not None or make_plan(weights_dir, choice, threads)


@dataclass(frozen=True)
class LeanEngines:
    """What a plan serves: the classifier's engine, the segmenter's forward pass (None without a segmenter), and
    the line that says what each is and why."""

    engine: Engine
    engine_note: str
    segmenter_run: Any
    segmenter_note: str


def lean_engines(weights_dir: Path, sidecar: dict[str, Any], choice: str | None, has_segmenter: bool
                 ) -> LeanEngines | None:
    """The engines this machine's plan chose for these weights, built from their verified cached exports without
    torch; a plan is made first where there is none. None where the plan serves PyTorch (it chose PyTorch, or
    no export agreed with it) or cannot be made: the caller then loads PyTorch."""
    threads = serving_threads()
    key = plan_key(sidecar, choice, threads, weights_dir)
    plan = read_plan(key)
    if plan is None and make_plan(weights_dir, choice, threads):
        plan = read_plan(key)
    if plan is None:
        return None
    classifier, segmenter = plan["classifier"], plan.get("segmenter")
    if classifier["engine"] not in LEAN_ENGINES or (has_segmenter and (segmenter or {}).get("engine") != "onnxruntime"):
        return None
    onnx = cached_export(classifier["export"], None)
    lung_onnx = cached_export(segmenter["export"], None) if has_segmenter else None
    if onnx is None or (has_segmenter and lung_onnx is None):
        log.warning("the serving plan's exports are missing or altered: choosing the engines again in this process")
        return None
    engine = _classifier_engine(classifier["engine"], onnx, weights_dir, sidecar, threads)
    run = None
    if lung_onnx is not None:
        from covidviz.model.segmenter_engine import onnx_probabilities
        run = onnx_probabilities(lung_onnx, threads)
    remembered = f"; chosen on this machine at {plan['made']} and remembered in {plan_path(key)}"
    return LeanEngines(engine, classifier["note"] + remembered, run,
                       (segmenter["note"] + remembered) if has_segmenter else "")


def _classifier_engine(name: str, onnx: bytes, weights_dir: Path, sidecar: dict[str, Any], threads: int) -> Engine:
    if name == "onnxruntime":
        from covidviz.model.engine import OnnxRuntimeEngine
        return OnnxRuntimeEngine(onnx, threads)
    from covidviz.model.openvino_engine import OpenVinoEngine, int8_engine
    if name == "openvino":
        return OpenVinoEngine.from_onnx(onnx, threads)
    return int8_engine(weights_dir, sidecar, onnx, threads)[0]


def record_plan(sidecar: dict[str, Any], choice: str | None, model: Any, engine: Engine, engine_note: str,
                segmenter: Any, segmenter_note: str, weights_dir: Path) -> None:
    """Remember what a full predictor chose (with the keys of the exports it serves from, made sure to be in
    this cache), so that the next lean predictor on this machine and software serves the same without torch.
    A plan that already names the same engines and exports is left as it is: most full predictors (every
    ``predict`` run, every batch worker) choose what the last one chose, and need not check the exports again."""
    from datetime import datetime, timezone

    from covidviz.model.engine import cached_onnx, export_key
    from covidviz.model.forward_pass import torch_threads
    from covidviz.model.segmenter_engine import segmenter_export_key, segmenter_onnx
    lean = engine.name in LEAN_ENGINES
    on_onnx = segmenter is not None and segmenter.engine == "onnxruntime"
    chosen = {"classifier": (engine.name, export_key(sidecar) if lean else None),
              "segmenter": None if segmenter is None else (segmenter.engine,
                                                           segmenter_export_key(segmenter) if on_onnx else None)}
    key = plan_key(sidecar, choice, torch_threads(), weights_dir)
    if _choice(read_plan(key)) == chosen:
        return
    if lean:
        cached_onnx(model, sidecar)
    if on_onnx:
        segmenter_onnx(segmenter)
    plan: dict[str, Any] = {"made": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                            "classifier": {"engine": engine.name, "note": engine_note,
                                           "export": chosen["classifier"][1]}}
    if segmenter is not None:
        plan["segmenter"] = {"engine": segmenter.engine, "note": segmenter_note, "export": chosen["segmenter"][1]}
    write_plan(key, plan)


def _choice(plan: dict[str, Any] | None) -> dict[str, Any] | None:
    """The engines and export keys a recorded plan names, in :func:`record_plan`'s form."""
    if plan is None:
        return None
    segmenter = plan.get("segmenter")
    return {"classifier": (plan["classifier"]["engine"], plan["classifier"]["export"]),
            "segmenter": None if segmenter is None else (segmenter["engine"], segmenter["export"])}

"""What a Diagnose reading costs per image with the shipped model against the previous one (the newest folder
under ``weights/history/``): the same X-ray, each model on the engines the dashboard would choose for it, timed
in turn. The page path is decode, lung field, forward and the three one-pass Grad-CAM maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from covidviz.explain.cam.fast_gradcam import cam_pass
from covidviz.io.loading import load_xray
from covidviz.model.engine import cached_onnx
from covidviz.model.predictor import Predictor
from covidviz.timing import interleaved_medians
from covidviz.tools.peak import graph_flops


def page_path(predictor: Predictor, blob: bytes) -> None:
    """One Diagnose reading: decode, lung field, then probabilities and the three maps from one forward pass."""
    image = predictor.prepare([load_xray(blob, "x.png").pixels])[0].image
    cam_pass(predictor.forward_for_maps([image]), predictor.classifier_weight)


def bench_against_previous(shipped: Predictor, previous_dir: Path, blob: bytes, repeats: int) -> dict[str, Any]:
    """Per image: operations, the dashboard's engine and the page path's median ms, for the shipped model (as the
    dashboard loads it) and the previous one; the ratio."""
    models = {"shipped": shipped, "previous": Predictor(previous_dir)}
    times = interleaved_medians({name: (lambda p=p: page_path(p, blob)) for name, p in models.items()}, repeats)
    out: dict[str, Any] = {}
    for name, p in models.items():
        out[name] = {"folder": str(p.weights_dir), "version": p.version,
                     "input_size": p.input_size,
                     "gflop_per_image": round(graph_flops(cached_onnx(p.model, p.sidecar)) / 1e9, 3),
                     "engine": p.engine_note, "page_path_ms": round(times[name] * 1000, 1)}
    out["page_path_ratio"] = round(times["shipped"] / times["previous"], 2)
    out["gflop_ratio"] = round(out["shipped"]["gflop_per_image"] / out["previous"]["gflop_per_image"], 2)
    return out


def print_against_previous(r: dict[str, Any], out: TextIO) -> None:
    s, p = r["shipped"], r["previous"]
    print(f"per image against the previous model ({p['folder']}, {p['version']}): {s['input_size']} px "
          f"{s['gflop_per_image']} GFLOP against {p['input_size']} px {p['gflop_per_image']} ({r['gflop_ratio']}x); "
          f"Diagnose page path (decode, lung field, forward, 3 maps) {s['page_path_ms']} ms against "
          f"{p['page_path_ms']} ms: {r['page_path_ratio']}x", file=out)

"""``python -m covidviz bench-batch``: images per second for ``predict`` and for ``batch`` on the same files,
and how ``batch`` grows from 1 to N model workers on this machine. JSON on the last line.

Every model worker, and ``predict``, runs one torch thread, so N workers use N cores and ``predict`` is
comparable with one worker. ``predict`` is timed after its model has loaded. ``batch`` is timed
end to end on N/2 and on N images (the workers load the model inside each run, as a real job pays once);
the difference gives the marginal rate a long archive job sees and the fixed start-up it pays once. Ray's own start is reported
apart: a cluster pays it once, not per job.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from covidviz.paths import EXAMPLES_DIR
from covidviz.tools.predict import IMAGE_SUFFIXES


def bench_files(data: str | None, count: int, folder: Path) -> list[Path]:
    """``count`` real X-rays copied into ``folder``: from ``data`` if given, else examples/xrays repeated
    (copies under new names: the same pixels, so every run does the same work)."""
    source = Path(data) if data else EXAMPLES_DIR
    originals = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not originals:
        raise FileNotFoundError(f"no images under {source}")
    files = []
    for i in range(count):
        original = originals[i % len(originals)]
        copy = folder / f"{i:05d}_{original.name}"
        shutil.copy(original, copy)
        files.append(copy)
    return files


def run_bench_batch(weights_dir: str | Path, data: str | None, count: int, max_workers: int, out: TextIO) -> int:
    import ray

    from covidviz.model.predictor import Predictor
    from covidviz.tools.batch import run_batch, start_ray
    from covidviz.tools.predict import predict_paths
    cores = os.cpu_count() or 1
    results: dict[str, Any] = {"images": count, "cores": cores, "torch_threads_per_worker": 1,
                               "source": data or "examples/xrays (repeated)"}
    with tempfile.TemporaryDirectory(prefix="covidviz-bench-batch-") as tmp:
        folder = Path(tmp) / "inputs"
        folder.mkdir()
        files = bench_files(data, count, folder)
        import torch
        torch.set_num_threads(1)
        predictor = Predictor(weights_dir)
        list(predict_paths(predictor, files[:4]))  # warm-up: kernels, lazy imports
        began = time.perf_counter()
        scored = list(predict_paths(predictor, files))
        seconds = time.perf_counter() - began
        results["predict_img_per_s"] = round(len(scored) / seconds, 2)
        del predictor
        began = time.perf_counter()
        start_ray(None, workers=max_workers, threads=1, ship_code=False)
        results["ray_start_s"] = round(time.perf_counter() - began, 1)
        results["batch"] = {}
        try:
            for workers in range(1, max_workers + 1):
                seconds_for = {}
                for size in (count // 2, count):  # the difference cancels the fixed start-up of the job
                    listing = Path(tmp) / f"inputs{workers}_{size}.txt"
                    listing.write_text("\n".join(str(f) for f in files[:size]))
                    summary = run_batch(str(listing), Path(tmp) / f"out{workers}_{size}.parquet",
                                        weights_dir=weights_dir, workers=workers, threads=1, audit=False,
                                        progress=None)
                    seconds_for[size] = summary.seconds
                extra = seconds_for[count] - seconds_for[count // 2]
                results["batch"][str(workers)] = {
                    "img_per_s": round(count / seconds_for[count], 2),
                    "marginal_img_per_s": round((count - count // 2) / extra, 2) if extra > 0 else None,
                    "startup_s": round(max(0.0, seconds_for[count // 2] - (extra if extra > 0 else 0)), 1),
                    "seconds": round(seconds_for[count], 1)}
        finally:
            ray.shutdown()
    one, last = results["batch"]["1"], results["batch"][str(max_workers)]
    if one["marginal_img_per_s"] and last["marginal_img_per_s"]:
        results[f"marginal_scaling_{max_workers}_over_1"] = round(last["marginal_img_per_s"]
                                                                 / one["marginal_img_per_s"], 2)
    print(f"bench-batch: {count} images ({results['source']}), {cores} cores; Ray start {results['ray_start_s']} s "
          "(not included below)", file=out)
    print(f"{'run':<22} {'img/s end to end':>17} {'img/s marginal':>15} {'start-up s':>11}", file=out)
    print(f"{'predict (model loaded)':<22} {results['predict_img_per_s']:>17.2f}", file=out)
    for workers, r in results["batch"].items():
        marginal = f"{r['marginal_img_per_s']:.2f}" if r["marginal_img_per_s"] else "-"
        print(f"{'batch, ' + workers + ' worker(s)':<22} {r['img_per_s']:>17.2f} {marginal:>15} "
              f"{r['startup_s']:>11.1f}", file=out)
    print(json.dumps(results), file=out)
    return 0

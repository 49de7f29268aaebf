"""``python -m covidviz bench``: how fast prediction is on this machine, fp32 against the fast path.

Prints a table and, on its last line, the same figures as one JSON object. Ratios are taken
within the run, so they compare like with like whatever else the machine is doing.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from covidviz.tools.bench_cam import bench_cam
from covidviz.io.loading import load_xray
from covidviz.model.predictor import Predictor
from covidviz.model.precision import native_bf16
from covidviz.data.split import read_split
from covidviz.tools.timing import median_seconds

from covidviz.paths import EXAMPLES_DIR as FIXTURES  # noqa: E402
BATCH = 32


def bench_images(weights_dir: Path, data_dir: Path, limit: int = 64) -> tuple[list[bytes], str]:
    """Real X-rays: the internal test split when the data is present, else the repo's examples/xrays."""
    split_file = weights_dir / "split.csv"
    if (data_dir / "metadata.csv").is_file() and split_file.is_file():
        files = read_split(split_file)["test"][:limit]
        return [(data_dir / f).read_bytes() for f in files], f"{len(files)} internal-test X-rays"
    files = sorted(FIXTURES.glob("*.png"))
    return [f.read_bytes() for f in files], f"{len(files)} fixture X-rays"


def run_bench(weights_dir: str | Path, data_dir: str | Path, repeats: int, out: TextIO) -> int:
    weights_dir, data_dir = Path(weights_dir), Path(data_dir)
    blobs, described = bench_images(weights_dir, data_dir)
    if not blobs:
        print("no X-rays to time: neither the data folder nor examples/xrays is present", file=out)
        return 1
    reference = Predictor(weights_dir)
    grays = [load_xray(b, "x.png").pixels for b in blobs]
    canonical = [p.image for p in reference.prepare(grays)]
    batch = (canonical * (BATCH // len(canonical) + 1))[:BATCH]
    results: dict[str, Any] = {"images": described, "threads": torch.get_num_threads(),
                               "cpu": platform.processor() or platform.machine(), "native_bf16": native_bf16()}
    if reference.segmenter is not None:
        one = median_seconds(lambda: reference.segmenter.probabilities(grays[:1]), repeats)
        results["lung_segmenter_ms_per_image"] = round(one * 1000, 1)
    labels = {}
    for mode, fast in (("fp32", False), ("fast", True)):
        predictor = Predictor(weights_dir, fast=fast)
        one = median_seconds(lambda p=predictor: p.predict_bytes(blobs[0], "x.png"), repeats)
        many = median_seconds(lambda p=predictor: p.probabilities(batch, batch_size=BATCH), max(3, repeats // 4))
        labels[mode] = predictor.probabilities(canonical).argmax(1)
        results[mode] = {"latency_ms_batch1": round(one * 1000, 1), "throughput_img_per_s": round(BATCH / many, 1)}
    results["cam"] = bench_cam(Predictor(weights_dir), canonical[0], repeats)
    results["fast_vs_fp32_speedup_batched"] = round(results["fast"]["throughput_img_per_s"]
                                                    / results["fp32"]["throughput_img_per_s"], 2)
    results["label_agreement_fast_vs_fp32"] = round(float(np.mean(labels["fp32"] == labels["fast"])), 4)
    print(f"covidviz bench on {described}, {results['threads']} threads "
          f"(latency: decode + preprocess + forward of one image; throughput: batches of {BATCH})", file=out)
    print(f"{'mode':<6} {'latency ms (batch 1)':>22} {'throughput img/s':>18}", file=out)
    for mode in ("fp32", "fast"):
        r = results[mode]
        print(f"{mode:<6} {r['latency_ms_batch1']:>22.1f} {r['throughput_img_per_s']:>18.1f}", file=out)
    print(f"fast/fp32 batched speed-up {results['fast_vs_fp32_speedup_batched']}x; "
          f"label agreement {results['label_agreement_fast_vs_fp32']:.2%} (native bf16: "
          f"{'yes' if results['native_bf16'] else 'no: predict --fast falls back to fp32'})", file=out)
    if "lung_segmenter_ms_per_image" in results:
        print(f"lung segmenter: {results['lung_segmenter_ms_per_image']} ms per image at 256 px (batch 1, "
              "included in the latencies above)", file=out)
    cam = results["cam"]
    print(f"\nheatmaps at batch 1 ({cam['input_size']} px input, fp32): one bare forward {cam['forward_ms']} ms | "
          f"page path (probabilities + 3 Grad-CAM maps) {cam['page_path_ms']} ms | straightforward pipeline "
          f"(prediction + pytorch-grad-cam GradCAM x3) {cam['straightforward_ms']} ms", file=out)
    print(f"page path / forward = {cam['page_over_forward']}x (target <= 1.5); straightforward / page path = "
          f"{cam['straightforward_over_page']}x (target >= 5); max |difference| of maps "
          f"{cam['max_abs_diff_vs_pytorch_grad_cam']:.1e}", file=out)
    print(json.dumps(results), file=out)
    return 0

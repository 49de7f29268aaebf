"""``python -m covidviz bench``: how fast prediction is on this machine, engine against engine.

One run, the same real X-rays for every engine: PyTorch fp32 eager (the baseline), ONNX Runtime fp32,
OpenVINO fp32, OpenVINO INT8 where ``python -m covidviz quantise`` has written its graph, and PyTorch bf16
autocast where the CPU runs bf16 natively. For each: images per second in batches, the forward pass at
batch 1, and the Diagnose page's one-pass heatmap path; against the baseline: label agreement and the
largest probability difference. INT8's full agreement table (every internal-test film and both external
sets) comes from its quantisation record, as measured on this CPU's int8 kernels. The limit is the machine's best measured fp32 matrix product
(:mod:`covidviz.tools.peak`, checked against the CPU's documented peak) and the operations counted in the
exported graph, so each engine's share of the hardware is one ratio. Beside the previous model (the newest under
``weights/history/``): operations and the Diagnose page path per image, each on its dashboard engines. A table,
then one JSON object on the last line.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from covidviz.data.split import read_split
from covidviz.explain.cam.fast_gradcam import cam_pass
from covidviz.io.loading import load_xray
from covidviz.model.cpu import int8_kernels
from covidviz.model.engine import LABELS, cached_onnx
from covidviz.model.openvino_engine import INT8_MODEL, INT8_SUBDIR, measured_agreement
from covidviz.model.precision import native_bf16
from covidviz.model.predictor import Predictor
from covidviz.model.preprocessing import model_batch
from covidviz.paths import EXAMPLES_DIR, latest_previous
from covidviz.timing import interleaved_medians
from covidviz.tools.bench_cam import bench_cam
from covidviz.tools.bench_previous import bench_against_previous, print_against_previous
from covidviz.tools.peak import documented_peak, graph_flops, measured_int8_peak, measured_peak

BATCH = 32
AGREEMENT_TARGET, PROBABILITY_TARGET = 1.0, 1e-3  # the bar for an exact engine


def bench_images(weights_dir: Path, data_dir: Path, limit: int = 64) -> tuple[list[bytes], str]:
    """Real X-rays: the internal test split when the data is present, else the repo's examples/xrays."""
    split_file = weights_dir / "split.csv"
    if (data_dir / "metadata.csv").is_file() and split_file.is_file():
        files = read_split(split_file)["test"][:limit]
        return [(data_dir / f).read_bytes() for f in files], f"{len(files)} internal-test X-rays"
    files = sorted(EXAMPLES_DIR.glob("*.png"))
    return [f.read_bytes() for f in files], f"{len(files)} example X-rays"


def forward_flops(model: torch.nn.Module, size: int) -> float:
    """Floating-point operations of one forward pass (2 per multiply-add of every convolution and linear
    layer; normalisation, pooling and activations are a few percent and left out)."""
    total = 0.0

    def count(module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += 2.0 * output.numel() * per_output
        elif isinstance(module, torch.nn.Linear):
            total += 2.0 * output.numel() * module.in_features

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, size, size))
    finally:
        for handle in handles:
            handle.remove()
    return total


def _engines(weights_dir: Path) -> dict[str, Predictor]:
    predictors = {"pytorch-fp32": Predictor(weights_dir, engine="torch"),
                  "onnxruntime-fp32": Predictor(weights_dir, engine="onnxruntime")}
    try:
        predictors["openvino-fp32"] = Predictor(weights_dir, engine="openvino")
        if (weights_dir / INT8_SUBDIR / INT8_MODEL).is_file():
            predictors["openvino-int8"] = Predictor(weights_dir, engine="openvino-int8")
    except ValueError as exc:  # OpenVINO not installed: the other engines are still worth measuring
        print(f"OpenVINO left out: {exc}")
    if native_bf16():
        predictors["pytorch-bf16"] = Predictor(weights_dir, fast=True)
    return predictors


def run_bench(weights_dir: str | Path, data_dir: str | Path, repeats: int, out: TextIO) -> int:
    weights_dir, data_dir = Path(weights_dir), Path(data_dir)
    blobs, described = bench_images(weights_dir, data_dir)
    if not blobs:
        print("no X-rays to time: neither the data folder nor examples/xrays is present", file=out)
        return 1
    predictors = _engines(weights_dir)
    baseline = predictors["pytorch-fp32"]
    grays = [load_xray(b, "x.png").pixels for b in blobs]
    canonical = [p.image for p in baseline.prepare(grays)]
    batch = (canonical * (BATCH // len(canonical) + 1))[:BATCH]
    one = model_batch(canonical[:1], baseline.input_size)
    flops = graph_flops(cached_onnx(baseline.model, baseline.sidecar))
    threads = torch.get_num_threads()
    peak, peak_where = measured_peak(threads)
    documented = documented_peak(threads)
    int8_peak = measured_int8_peak(threads)
    results: dict[str, Any] = {
        "images": described, "threads": threads, "cpu": platform.processor() or platform.machine(),
        "native_bf16": native_bf16(), "input_size": baseline.input_size, "gflop_per_image": round(flops / 1e9, 3),
        "hook_gflop_per_image": round(forward_flops(baseline.model, baseline.input_size) / 1e9, 3),
        "peak_gflop_per_s": round(peak, 1), "peak_measured_on": peak_where,
        "documented_peak_gflop_per_s": None if documented is None else round(documented.gflop_per_s, 1),
        "documented_peak": None if documented is None else documented.describe(),
        "physical_limit_ms_per_image": round(flops / (peak * 1e9) * 1000, 2),
        "int8_peak_gop_per_s": None if int8_peak is None else round(int8_peak[0], 1),
        "int8_peak_measured_on": None if int8_peak is None else int8_peak[1]}
    if baseline.segmenter is not None:  # PyTorch's, and ONNX Runtime's where its export agrees
        segmenters = {p.segmenter.engine: p.segmenter for p in predictors.values()}
        times = interleaved_medians({name: (lambda s=s: s.probabilities(grays[:1])) for name, s in segmenters.items()},
                                    repeats)
        results["lung_segmenter_ms_per_image"] = {name: round(t * 1000, 1) for name, t in times.items()}
    reference = baseline.probabilities(canonical)
    timed = {
        "throughput": interleaved_medians({n: (lambda p=p: p.forward(batch, batch_size=BATCH))
                                           for n, p in predictors.items()}, max(3, repeats // 4)),
        "single": interleaved_medians({n: (lambda p=p: p.engine.run(one)) for n, p in predictors.items()}, repeats),
        "heatmap": interleaved_medians({n: (lambda p=p: cam_pass(p.forward_for_maps(canonical[:1]), p.classifier_weight))
                                        for n, p in predictors.items()}, repeats),
        "end_to_end": interleaved_medians({n: (lambda p=p: p.predict_bytes(blobs[0], "x.png"))
                                           for n, p in predictors.items()}, max(3, repeats // 2)),
    }
    engines = {}
    for name, predictor in predictors.items():
        probs = predictor.probabilities(canonical)
        engines[name] = {
            "throughput_img_per_s": round(BATCH / timed["throughput"][name], 1),
            "latency_ms_batch1": round(timed["single"][name] * 1000, 1),
            "heatmap_path_ms": round(timed["heatmap"][name] * 1000, 1),
            "end_to_end_ms": round(timed["end_to_end"][name] * 1000, 1),
            "label_agreement": round(float(np.mean(probs.argmax(1) == reference.argmax(1))), 4),
            "max_probability_difference": float(np.abs(probs - reference).max()),
            # each engine against the peak of the arithmetic it runs: INT8 against the int8 GEMM's
            "share_of_peak": round(flops * BATCH / timed["throughput"][name] / (
                (int8_peak[0] if "int8" in name and int8_peak else peak) * 1e9), 3),
            "chosen_because": predictor.engine_note}
    results["engines"] = engines
    fastest = max(engines, key=lambda n: engines[n]["throughput_img_per_s"]
                  if engines[n]["max_probability_difference"] < PROBABILITY_TARGET else 0)
    base = engines["pytorch-fp32"]["throughput_img_per_s"]
    results["exact_engine"] = fastest
    results["speedup_batched_vs_pytorch_fp32"] = round(engines[fastest]["throughput_img_per_s"] / base, 2)
    results["speedup_batch1_vs_pytorch_fp32"] = round(
        engines["pytorch-fp32"]["latency_ms_batch1"] / engines[fastest]["latency_ms_batch1"], 2)
    results["ms_per_image_batched_over_physical_limit"] = round(
        1000 / engines[fastest]["throughput_img_per_s"] / results["physical_limit_ms_per_image"], 2)
    if "openvino-int8" in predictors:
        int8 = engines["openvino-int8"]["throughput_img_per_s"]
        results["int8"] = {"batched_vs_pytorch_fp32": round(int8 / base, 2),
                           "batched_vs_onnxruntime_fp32": round(int8 / engines["onnxruntime-fp32"]["throughput_img_per_s"], 2),
                           "int8_kernels": int8_kernels(),
                           "agreement": measured_agreement(predictors["openvino-int8"].engine.record)}
    dashboard = Predictor(weights_dir)  # what `auto` chooses here, for the classifier and the segmenter
    results["auto_choice"] = dashboard.engine_note
    if baseline.segmenter is not None:
        results["lung_segmenter_auto_choice"] = dashboard.segmenter_note
    results["cam"] = bench_cam(baseline, canonical[0], repeats)
    if (previous := latest_previous(weights_dir)) is not None:
        results["against_previous"] = bench_against_previous(dashboard, previous, blobs[0], max(3, repeats // 2))
    _print(results, out)
    print(json.dumps(results), file=out)
    return 0


def _print(r: dict[str, Any], out: TextIO) -> None:
    print(f"covidviz bench on {r['images']}, {r['threads']} threads, {r['input_size']} px input, CPU "
          f"{r['cpu']} (native bf16: {'yes' if r['native_bf16'] else 'no: bf16 is not offered'})", file=out)
    print(f"{'engine':<18} {'img/s (batch 32)':>16} {'ms (batch 1)':>13} {'heatmap path ms':>16} "
          f"{'end to end ms':>14} {'labels agree':>13} {'max |dp|':>9}", file=out)
    for name, e in r["engines"].items():
        print(f"{name:<18} {e['throughput_img_per_s']:>16.1f} {e['latency_ms_batch1']:>13.1f} "
              f"{e['heatmap_path_ms']:>16.1f} {e['end_to_end_ms']:>14.1f} {e['label_agreement']:>13.2%} "
              f"{e['max_probability_difference']:>9.1e}", file=out)
    print(f"fastest exact engine: {r['exact_engine']}, {r['speedup_batched_vs_pytorch_fp32']}x PyTorch fp32 batched "
          f"(target >= 2), {r['speedup_batch1_vs_pytorch_fp32']}x at batch 1; latency at batch 1 "
          f"{r['engines'][r['exact_engine']]['latency_ms_batch1']} ms (target <= 35)", file=out)
    documented = (f"documented peak {r['documented_peak']}" if r["documented_peak"] else
                  "no documented peak for this CPU model")
    print(f"limit: {r['gflop_per_image']} GFLOP per image (counted in the exported graph; PyTorch hooks count "
          f"{r['hook_gflop_per_image']}) at this machine's best measured fp32 rate, {r['peak_gflop_per_s']} GFLOP/s "
          f"({r['peak_measured_on']} matrix product; {documented}) = {r['physical_limit_ms_per_image']} ms per "
          f"image; the fastest exact engine takes {r['ms_per_image_batched_over_physical_limit']}x that", file=out)
    if r["documented_peak_gflop_per_s"] and r["peak_gflop_per_s"] > r["documented_peak_gflop_per_s"]:
        print("  the measured rate exceeds the documented peak at the reported clock: the cores boost above it",
              file=out)
    if r["int8_peak_gop_per_s"]:
        print(f"int8 peak: {r['int8_peak_gop_per_s']} GOP/s ({r['int8_peak_measured_on']}), "
              f"{r['int8_peak_gop_per_s'] / r['peak_gflop_per_s']:.2f}x the fp32 peak", file=out)
    print("share of the peak of its own arithmetic per engine (batched; INT8 against the int8 peak): " + ", ".join(
        f"{n} {e['share_of_peak']:.0%}" for n, e in r["engines"].items()), file=out)
    if "int8" in r:
        i = r["int8"]
        print(f"INT8 (approximate): {i['batched_vs_pytorch_fp32']}x PyTorch fp32 batched (target >= 2.0), "
              f"{i['batched_vs_onnxruntime_fp32']}x ONNX Runtime fp32 (target >= 1.3); agreement with fp32 "
              f"on this CPU's {i['int8_kernels']} int8 kernels (weights/int8/quantisation.json):", file=out)
        if i["agreement"] is None:
            print("  never measured on these kernels: run `python -m covidviz quantise --measure`", file=out)
        for name, a in (i["agreement"] or {}).items():
            if isinstance(a, dict):
                target = " (target >= 99.50%)" if name == "internal_test" else ""
                print(f"  {name:<24} {a['images']:>5} films  labels agree {a['label_agreement']:.2%}{target}  "
                      f"max |dp| {a['max_probability_difference']:.3f}  "
                      f"p99 |dp| {a['p99_probability_difference']:.3f}", file=out)
    print(f"the dashboard's choice ('auto'): {r['auto_choice']}", file=out)
    if "lung_segmenter_ms_per_image" in r:
        times = r["lung_segmenter_ms_per_image"]
        print("lung segmenter, ms per image at 256 px (part of 'end to end': decode, lung field, forward): "
              + ", ".join(f"{LABELS[name]} {ms}" for name, ms in times.items())
              + (f"; ONNX Runtime at {times['torch'] / times['onnxruntime']:.2f}x PyTorch's speed"
                 if len(times) == 2 else ""), file=out)
        print(f"the dashboard's segmenter ('auto'): {r['lung_segmenter_auto_choice']}", file=out)
    if "against_previous" in r:
        print_against_previous(r["against_previous"], out)
    cam = r["cam"]
    print(f"heatmaps at batch 1, PyTorch fp32: one bare forward {cam['forward_ms']} ms | page path (probabilities + "
          f"3 Grad-CAM maps) {cam['page_path_ms']} ms | straightforward pipeline (prediction + pytorch-grad-cam "
          f"GradCAM x3) {cam['straightforward_ms']} ms; page/forward {cam['page_over_forward']}x (target <= 1.5), "
          f"straightforward/page {cam['straightforward_over_page']}x (target >= 5), max |difference| of maps "
          f"{cam['max_abs_diff_vs_pytorch_grad_cam']:.1e}", file=out)

"""Where the dashboard server's memory goes: each part's cost in resident memory, in the order the server pays it.

Runs in a fresh process, started the way ``make app`` starts the server (``MALLOC_ARENA_MAX=2``), the parts
the server loads one after another: the libraries it imports, the model as :class:`Predictor` loads it for the
dashboard (lean: from this machine's serving plan, without torch where its engines need none; its ``stage``
hook reports after each part, on the dashboard's own path) and the readings of example X-rays as the
Diagnose page makes them (decode in the isolated worker, lungs, model, maps, the overlay). Resident memory
(``VmRSS``) is read after each step, so a step's figure is what it added and kept: freed memory that glibc keeps
for reuse counts too, as it does for the server. The decoding worker is a process of its own; its memory is
shown apart. Usage:

    python scripts/memory_breakdown.py                       # the engine `make app` serves (COVIDVIZ_ENGINE or auto)
    python scripts/memory_breakdown.py --engine onnxruntime --readings 10
    python scripts/memory_breakdown.py --full      # the PyTorch-loading predictor the CLI uses, for comparison

Prints a table and, on the last line, JSON (steps with MB after and added, worker MB, engine notes).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def resident_mb(pid: int | str = "self") -> float:
    """VmRSS of a process in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children_mb() -> float:
    """Resident memory of this process's children (the decoding workers)."""
    total, me = 0.0, str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:
            total += resident_mb(stat.parent.name)
    return total


class Ledger:
    """Resident memory after each named step, and what the step added."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float | str]] = []
        self.last = resident_mb()
        self.steps.append({"step": "Python interpreter", "mb": round(self.last, 1), "added_mb": round(self.last, 1)})

    def mark(self, name: str) -> None:
        gc.collect()
        now = resident_mb()
        self.steps.append({"step": name, "mb": round(now, 1), "added_mb": round(now - self.last, 1)})
        self.last = now

    def run(self, name: str, step: Callable[[], object]) -> object:
        result = step()
        self.mark(name)
        return result


def breakdown(engine: str | None, readings: int, full: bool = False) -> dict[str, object]:
    ledger = Ledger()
    sys.path.insert(0, str(ROOT))
    ledger.run("numpy, OpenCV, Pillow", lambda: (__import__("numpy"), __import__("cv2"), __import__("PIL.Image")))
    ledger.run("streamlit", lambda: __import__("streamlit"))
    ledger.run("ONNX Runtime", lambda: __import__("onnxruntime"))
    if full:
        ledger.run("torch", lambda: __import__("torch"))

        def torchvision() -> None:
            from covidviz._torchvision_compat import ensure_torchvision_importable
            ensure_torchvision_importable()
            __import__("torchvision")
        ledger.run("torchvision", torchvision)
    from covidviz.model.predictor import Predictor
    ledger.mark("covidviz's serving modules (pydicom, SQLAlchemy, safetensors…)")
    predictor = Predictor(ROOT / "weights", engine=engine, stage=ledger.mark, lean=not full)

    from covidviz.explain.overlay import downscale, render, to_uint8
    from covidviz.explain.reading import heatmap, heatmap_on_original, read_xray
    from covidviz.io.images import jpeg_bytes, png_bytes
    from covidviz.io.isolation import read_untrusted
    examples = sorted((ROOT / "examples" / "xrays").glob("*.png"))
    if not examples:
        raise SystemExit("no example X-rays in examples/xrays")

    def read(path: Path) -> None:
        xray = read_untrusted(path.read_bytes(), path.name)
        reading = read_xray(predictor, xray, path.name, predictor.guard)
        gray = downscale(reading.xray.pixels)
        shown = downscale(heatmap_on_original(reading, heatmap(reading, predictor, "Grad-CAM", 0)))
        png_bytes(to_uint8(gray))
        jpeg_bytes(render(gray, shown, "heatmap", "inferno", 0.45, 0.0))
    from covidviz.ui.resources import trim_heap
    ledger.run("freed memory handed back (malloc_trim, as the dashboard does after loading)", trim_heap)
    ledger.run("first reading (decode in the worker, lungs, model, maps, overlay)", lambda: read(examples[0]))
    ledger.run(f"{readings - 1} more readings", lambda: [read(examples[i % len(examples)]) for i in range(1, readings)])
    return {"steps": ledger.steps, "server_mb": round(ledger.last, 1), "decode_workers_mb": round(children_mb(), 1),
            "engine": predictor.engine_note, "segmenter": predictor.segmenter_note,
            "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"), "lean": not full,
            "torch_loaded": "torch" in sys.modules}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default=None, help="as COVIDVIZ_ENGINE (default: it, else auto)")
    parser.add_argument("--readings", type=int, default=10, help="example X-rays read after loading (default 10)")
    parser.add_argument("--full", action="store_true", help="the predictor that loads PyTorch (the CLI's), not the "
                        "dashboard's lean one")
    args = parser.parse_args(argv)
    if os.environ.get("MALLOC_ARENA_MAX") != "2":  # as `make app` starts the server: re-run under its setting
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "MALLOC_ARENA_MAX": "2"})
    result = breakdown(args.engine, max(1, args.readings), args.full)
    width = max(len(str(s["step"])) for s in result["steps"])
    print(f"{'step':<{width}}  {'added MB':>9}  {'RSS MB':>8}")
    for s in result["steps"]:
        print(f"{s['step']:<{width}}  {s['added_mb']:>9.1f}  {s['mb']:>8.1f}")
    print(f"server: {result['server_mb']:.0f} MB resident ({'torch loaded' if result['torch_loaded'] else 'no torch'})"
          f"; decoding worker(s), a process apart: {result['decode_workers_mb']:.0f} MB")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m covidviz batch``: score a whole archive with Ray Data, resumably, into a Parquet dataset.

The Ray pipeline (inputs: :mod:`covidviz.tools.batch_sources`, output parts: :mod:`covidviz.tools.batch_parts`):
the driver lists the inputs and drops those already in the output; Ray tasks read and decode
them in parallel (a file that cannot be used becomes a row with its error, never an exception); a pool of
actors, each holding the model once, scores them in batches through the same
:class:`~covidviz.model.predictor.Predictor` as ``predict``, so the numbers are the same; the driver writes
the rows in small Parquet part files as they arrive (a killed job loses at most the part being filled, and
the next run skips everything already written) and records them in the audit log.

Without ``--address`` (or ``RAY_ADDRESS``, which ``ray job submit`` sets for the job) a local Ray is started for
the job, sized to this machine; with one, the job runs on that cluster (:mod:`covidviz.tools.ray_cluster`: its
token authentication), whose nodes must see the input paths and hold the project (or get it with ``--ship-code``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pyarrow as pa

from covidviz.paths import ROOT
from covidviz.tools.batch_parts import RESULT_SCHEMA, PartWriter, result_row, result_table, scored_keys
from covidviz.tools.batch_sources import DECODED_SCHEMA, ArchiveSource, BatchSourceError, decode_batch, open_source
from covidviz.tools.ray_cluster import connect, job_address

LOCAL_OBJECT_STORE_BYTES = 512 * 2**20  # decoded X-rays are a few MB each; Ray spills to disk beyond this
DECODE_BATCH = 4
# Below the actors' whole CPU on purpose: Ray fuses a task stage into the actor stage after it when their
# resources match, and decoding would then run inside the model workers instead of beside them.
DECODE_CPUS = 0.5
SHIP_EXCLUDES = [".venv/", ".git/", "runs/", "tests/", "weights/history", "weights/eval", "**/__pycache__"]
NO_CLASS = "no class (abstained)"  # the summary's count of images the model gave no class


class Scorer:
    """Ray actor: the model, loaded once, scoring decoded batches exactly as ``predict`` does.

    Lean, as the dashboard's server: it serves the engines this machine's plan chose for its thread count
    (:mod:`covidviz.model.serving_plan`), without loading torch where they need none, so each worker holds
    about a third of the memory a PyTorch-loading one did."""

    def __init__(self, weights_dir: str, threads: int) -> None:
        os.environ["OMP_NUM_THREADS"] = str(max(1, threads))  # the plan's thread count, and torch's if it loads
        from covidviz.model.predictor import Predictor
        self.predictor = Predictor(weights_dir, lean=True)
        self.model_sha256 = self.predictor.sidecar.get("weights_sha256")

    def __call__(self, table: pa.Table) -> pa.Table:
        from covidviz.io.xray import Xray
        from covidviz.model.predictor import Prediction
        batch = {name: table.column(name).to_pylist() for name in DECODED_SCHEMA.names}
        keys = batch["key"]
        outcomes: dict[int, Prediction] = {}
        todo: list[tuple[int, Xray]] = []
        for i, key in enumerate(keys):
            if batch["error"][i] is not None:
                outcomes[i] = Prediction(name=key, error=str(batch["error"][i]))
                continue
            shape = (int(batch["height"][i]), int(batch["width"][i]))
            pixels = np.frombuffer(batch["pixels"][i], dtype=np.float32).reshape(shape)
            todo.append((i, Xray(pixels=pixels, info=json.loads(batch["info"][i]),
                                 warnings=tuple(json.loads(batch["warnings"][i])),
                                 colourfulness=float(batch["colourfulness"][i]))))
        for i, prediction in self._score(todo, keys):
            outcomes[i] = prediction
        return result_table([result_row(outcomes[i].as_json(), batch["sha256"][i], self.model_sha256)
                             for i in range(len(keys))])

    def _score(self, todo: list[tuple[int, Any]], keys: list[str]) -> Iterable[tuple[int, Any]]:
        from covidviz.model.predictor import Prediction
        try:
            predictions = self.predictor.predict_xrays([x for _, x in todo], [keys[i] for i, _ in todo])
            return [(i, p) for (i, _), p in zip(todo, predictions)]
        except Exception:  # noqa: BLE001  (find the one image that breaks the batch; score the rest)
            out = []
            for i, xray in todo:
                try:
                    out.append((i, self.predictor.predict_xrays([xray], [keys[i]])[0]))
                except Exception as exc:  # noqa: BLE001
                    out.append((i, Prediction(name=keys[i], error=f"The model could not score this image "
                                                                  f"({exc.__class__.__name__}: {exc}).")))
            return out


@dataclass
class BatchSummary:
    source: str = ""  # what was listed, and what was left out (a PACS query's lateral or non-chest images)
    total: int = 0
    skipped: int = 0
    scored: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    labels: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    ray_start_seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        done = self.scored + len(self.rejected)
        return done / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {"inputs": self.total, "skipped_already_scored": self.skipped, "scored": self.scored,
                "rejected": len(self.rejected), "labels": dict(self.labels), "seconds": round(self.seconds, 2),
                "images_per_s": round(self.images_per_second, 2),
                "ray_start_seconds": round(self.ray_start_seconds, 2)}


def start_ray(address: str | None, workers: int, threads: int, ship_code: bool) -> bool:
    """Connect to ``address`` or start a local Ray sized for the job; True when this call started it.
    An already-initialised Ray (a test module's, a notebook's) is reused as it is."""
    import ray
    if ray.is_initialized():
        return False
    if address:
        runtime_env = {"working_dir": str(ROOT), "excludes": SHIP_EXCLUDES} if ship_code else None
        try:
            connect(address, runtime_env)
        except ConnectionError as exc:
            raise BatchSourceError(str(exc)) from None
        return True
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    cores = os.cpu_count() or 1
    # logical CPUs: the model actors' threads plus one slot per core for the decoding tasks beside them
    ray.init(num_cpus=workers * threads + cores, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
             include_dashboard=False, log_to_driver=False, configure_logging=False)
    return True


def build_dataset(source: ArchiveSource, keys: list[str], weights_dir: str, workers: int, threads: int,
                  batch_size: int):
    import ray.data
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver shows one bar over images, not one per operator
    blocks = max(1, min(len(keys), 4 * workers * max(1, batch_size // DECODE_BATCH)))
    return (ray.data.from_items([{"key": k} for k in keys], override_num_blocks=blocks)
            .map_batches(decode_batch, fn_kwargs={"source": source}, batch_size=DECODE_BATCH, num_cpus=DECODE_CPUS)
            .map_batches(Scorer, fn_constructor_kwargs={"weights_dir": str(weights_dir), "threads": threads},
                         compute=ray.data.ActorPoolStrategy(size=workers), batch_size=batch_size,
                         num_cpus=threads, batch_format="pyarrow"))


def run_batch(source: str | ArchiveSource, out: str | Path, *, weights_dir: str | Path, address: str | None = None,
              workers: int = 1, threads: int | None = None, batch_size: int = 16, audit: bool = True,
              ship_code: bool = False, progress: TextIO | None = sys.stderr,
              on_rows: Callable[[pa.Table], None] | None = None) -> BatchSummary:
    """Score every input of ``source`` not yet in ``out``; append the results to ``out`` as Parquet parts."""
    from covidviz.model.site_profile import calibrated_sidecar
    from covidviz.verified import read_sidecar
    src = open_source(source) if isinstance(source, str) else source
    out = Path(out)
    keys = src.keys()
    done = scored_keys(out)
    todo = [k for k in keys if k not in done]
    summary = BatchSummary(source=src.description, total=len(keys), skipped=len(keys) - len(todo))
    if not todo:
        return summary
    if workers < 1 or batch_size < 1:
        raise ValueError("--workers and --batch-size must be at least 1")
    address = job_address(address, os.environ)
    threads = threads or (1 if address else max(1, (os.cpu_count() or 1) // workers))
    import ray
    if address and address.startswith("ray://") and not ray.is_initialized():
        return run_through_client(src, out, address, ship_code, weights_dir=str(weights_dir), workers=workers,
                                  threads=threads, batch_size=batch_size, audit=audit)
    sidecar = calibrated_sidecar(read_sidecar(weights_dir))  # audit records name the calibration in use
    guard_present = (Path(weights_dir) / "ood.safetensors").is_file()
    if not address:  # the local workers share this machine's plan: chosen once here, not by each of them
        from covidviz.model.serving_plan import ensure_plan
        ensure_plan(Path(weights_dir), threads)
    started_at = time.perf_counter()
    started = start_ray(address, workers, threads, ship_code)
    summary.ray_start_seconds = time.perf_counter() - started_at
    writer = PartWriter(out)
    bar = None
    if progress is not None:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), unit="img", file=progress, desc="scoring", dynamic_ncols=True)
    began = time.perf_counter()
    try:
        dataset = build_dataset(src, todo, str(weights_dir), workers, threads, batch_size)
        for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            table = table.select(RESULT_SCHEMA.names).cast(RESULT_SCHEMA)
            writer.add(table)
            rows = table.to_pylist()
            for row in rows:
                if row["error"] is not None:
                    summary.rejected.append((row["file"], row["error"]))
                else:
                    summary.scored += 1
                    summary.labels[row["label"] or NO_CLASS] += 1
            if audit:
                from covidviz.audit.recorder import record_results
                record_results("batch", [(r["sha256"], {k: r[k] for k in ("file", "label", "abstained",
                                                                           "probabilities", "warnings", "error")}) for r in rows],
                               sidecar, guard_present)
            if on_rows is not None:
                on_rows(table)
            if bar is not None:
                bar.update(table.num_rows)
    finally:
        writer.flush()
        summary.seconds = time.perf_counter() - began
        if bar is not None:
            bar.close()
        if audit:
            from covidviz.audit.recorder import flush_all
            flush_all()
        if started:
            ray.shutdown()
    return summary


def run_through_client(source: ArchiveSource, out: Path, address: str, ship_code: bool, **job: Any) -> BatchSummary:
    """The job through Ray Client (``ray://``): Ray Data 2.60 cannot run its executor in a Ray Client driver (it
    needs the driver's own core worker: "'Worker' object has no attribute 'core_worker'"), so the whole of
    :func:`run_batch` runs as one task on the cluster, with the source listed here. ``out`` and the audit
    database are then the cluster node's: give a path every node sees."""
    import ray
    started_at = time.perf_counter()
    start_ray(address, job["workers"], job["threads"], ship_code)
    connected = time.perf_counter() - started_at
    try:
        task = ray.remote(num_cpus=0)(run_batch)  # its model workers and decoding tasks ask for the CPUs
        summary = ray.get(task.remote(source, str(out), progress=None, **job))
    finally:
        ray.shutdown()
    summary.ray_start_seconds += connected
    return summary


def print_summary(summary: BatchSummary, out_path: Path, stream: TextIO) -> None:
    if summary.source:
        print(f"source: {summary.source}", file=stream)
    print(f"{summary.total} inputs: {summary.scored} scored, {len(summary.rejected)} rejected, "
          f"{summary.skipped} skipped (already in {out_path})", file=stream)
    if summary.scored or summary.rejected:
        print(f"{summary.images_per_second:.2f} images/s over {summary.seconds:.1f} s "
              f"(Ray start {summary.ray_start_seconds:.1f} s not included)", file=stream)
    if summary.labels:
        print("labels: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.labels.items())), file=stream)
    for key, error in summary.rejected:
        print(f"rejected\t{key}\t{error}", file=stream)
    print(json.dumps(summary.as_json()), file=stream)


def run_batch_cli(args: argparse.Namespace) -> int:
    """The ``batch`` subcommand: exit 0 even when some inputs were rejected (they are listed), 1 when the job
    could not run."""
    import logging
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # the job prints its own progress and summary
    try:
        summary = run_batch(args.source, args.out, weights_dir=args.weights, address=args.address,
                            workers=args.workers, batch_size=args.batch_size, audit=not args.no_audit,
                            ship_code=args.ship_code)
    except (BatchSourceError, ValueError, OSError) as exc:
        print(f"batch: {exc}", file=sys.stderr)
        return 1
    print_summary(summary, Path(args.out), sys.stdout)
    return 0

"""Load test: many browser sessions against one dashboard server, each with its own X-ray.

Starts a Streamlit server on 127.0.0.1, opens ``--sessions`` sessions in Debian's Chromium (one browser,
one context per session, all at once), and in each: uploads a different X-ray (the example PNGs, and
DICOMs made from them at ``--side`` px, 16-bit: 4800 px is a 46 MB file, near the upload limit), waits for
the verdict and the first heatmap, then switches the heatmap method (a queued library method) and waits
for that map. Prints, and returns as JSON on the last line:

- the server's peak memory (VmHWM: the largest resident set it ever had) and its memory before the load, and
  the peaks of its worker processes apart (the decoding workers, and the heatmap worker that draws the library
  methods), with all peaks added as an upper bound on what server and workers held together;
- upload-to-heatmap seconds per session (p50, p95, max) and method-switch seconds;
- errors (timeouts, or an exception shown on a page): must be 0;
- sessions whose shown verdict differs from ``Predictor.predict_bytes`` on their own file: must be 0
  (no session ever sees another's result);
- with ``--hostile`` (default 1), sessions that meanwhile upload hostile files: a 14.8 KB DICOM that once hung
  the decoder forever (tests/fuzz_corpus/hung-deflate-eof-*.dcm) and a 46-megapixel noise PNG (46 MB, as large
  as the upload limit allows, seconds to decode); each must see the refusal of the first and a result for the
  second, while the others get their results in their usual time.

The DICOMs are honest about what they are: a real public chest X-ray (examples/xrays) enlarged, under an
invented header (covidviz.interop.sample_dicom). Usage:
    python scripts/load_test.py --sessions 6 --side 4800 --dicom-every 1   # 6 different 46 MB DICOMs
    python scripts/load_test.py --sessions 8 --side 2400        # the short form the tests run
    python scripts/load_test.py --sessions 6 --hostile 0       # the same without hostile sessions, to compare
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from covidviz import CLASS_TITLES  # noqa: E402
from covidviz.interop.sample_dicom import enlarged_radiograph  # noqa: E402
from covidviz.paths import EXAMPLES_DIR  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
SECOND_METHOD = "HiResCAM"
FORMER_HANG = next((ROOT / "tests" / "fuzz_corpus").glob("hung-deflate-eof-*.dcm"))
REFUSAL = "The deflated DICOM data set ends"  # what the former hang is refused with


def inputs(sessions: int, side: int, folder: Path, dicom_every: int = 2) -> list[Path]:
    """One file per session, all different: every ``dicom_every``-th a large DICOM (1: all), the rest the
    example PNGs."""
    pngs = sorted(EXAMPLES_DIR.glob("*.png"))
    files = []
    for i in range(sessions):
        source = pngs[i % len(pngs)]
        if i % dicom_every == 0:
            path = folder / f"session{i}_{source.stem}_{side}px.dcm"
            path.write_bytes(enlarged_radiograph(source.read_bytes(), side + 16 * i, i))  # each differs
        else:
            path = folder / f"session{i}_{source.name}"
            path.write_bytes(source.read_bytes())
        files.append(path)
    return files


def hostile_files(folder: Path) -> list[Path]:
    """The file that once hung the decoder, and the largest noise PNG the upload limit lets through."""
    huge = folder / "hostile_noise_6800px.png"
    noise = np.random.default_rng(25).integers(0, 256, (6800, 6800), dtype=np.uint8)
    cv2.imwrite(str(huge), noise, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    hang = folder / "hostile_former_hang.dcm"
    hang.write_bytes(FORMER_HANG.read_bytes())
    return [hang, huge]


def memory_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def worker_peaks_kb(server: int) -> dict[str, int]:
    """The peak resident memory of each kind of worker process the server started, added per kind."""
    peaks: dict[str, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != server:
                continue
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            peak = memory_kb(int(stat.parent.name))["VmHWM"]
        except (OSError, ValueError, KeyError):
            continue
        kind = "heatmap_worker" if "covidviz.explain.cam.worker" in command else \
            "decode_workers" if "covidviz.io.decode_worker" in command else "other"
        peaks[kind] = peaks.get(kind, 0) + peak
    return peaks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "MALLOC_ARENA_MAX": "2"})  # as `make app` runs it
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1):
                return process, url
        except OSError:
            time.sleep(0.25)
    process.terminate()
    raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")


@dataclass
class Outcome:
    file: str
    upload_to_heatmap_s: float | None = None
    method_switch_s: float | None = None
    shown: str | None = None
    error: str | None = None
    waiting_for: str = "the uploader"  # the step under way, named in the error if it never ends


async def shown_text(page, chars: int = 400) -> str:
    """The end of the page's visible text (the demo films carry no patient data), to tell a stuck session
    from a slow one when a step times out."""
    try:
        text = await page.locator("[data-testid=stMain]").inner_text(timeout=10_000)
    except Exception as exc:  # noqa: BLE001
        return f"(unreadable: {exc.__class__.__name__})"
    return " ".join(text.split())[-chars:]


async def in_a_session(browser, url: str, name: str, timeout_s: float, steps) -> Outcome:
    """A fresh browser context on the dashboard, ``steps(page, outcome, timeout_ms)`` once the uploader shows;
    every failure is counted in the outcome, none stops the other sessions."""
    outcome = Outcome(file=name)
    context = await browser.new_context(viewport={"width": 1500, "height": 1100})
    # every action (goto, set_input_files, click) gets the caller's budget, not Playwright's default 30 s:
    # under eight sessions on two cores even handing a file to the uploader can wait that long
    context.set_default_timeout(timeout_s * 1000)
    page = await context.new_page()
    try:
        await page.goto(url)
        await page.get_by_text("Upload one or more chest X-rays").wait_for(timeout=timeout_s * 1000)
        await steps(page, outcome, timeout_s * 1000)
        if await page.locator("[data-testid=stException]").count():
            outcome.error = "an exception is shown on the page"
    except Exception as exc:  # noqa: BLE001
        outcome.error = (f"{exc.__class__.__name__} waiting for {outcome.waiting_for}: "
                         f"{str(exc).splitlines()[0][:200]}; the page then showed: {await shown_text(page)}")
    finally:
        await context.close()
    return outcome


async def session(browser, url: str, path: Path, timeout_s: float) -> Outcome:
    """Uploads one film, waits for its verdict and first heatmap, then switches to a queued method."""
    async def steps(page, outcome: Outcome, timeout_ms: float) -> None:
        started = time.perf_counter()
        outcome.waiting_for = "the upload"
        await page.locator("input[type=file]").set_input_files(str(path))
        verdict = page.locator("p", has_text="Model output:").first
        outcome.waiting_for = "the verdict"
        await verdict.wait_for(timeout=timeout_ms)
        outcome.waiting_for = "the first heatmap"
        await page.locator("[data-testid=stImage]", has_text=" · p = ").locator("img").first.wait_for(timeout=timeout_ms)
        outcome.upload_to_heatmap_s = time.perf_counter() - started
        outcome.shown = (await verdict.inner_text()).split("Model output:")[-1].strip()
        started = time.perf_counter()
        outcome.waiting_for = f"the switch to {SECOND_METHOD}"
        await page.get_by_role("combobox", name="CAM method").click()
        await page.get_by_role("option", name=SECOND_METHOD, exact=True).click()
        await page.locator("[data-testid=stImage]", has_text=SECOND_METHOD).first.wait_for(timeout=timeout_ms)
        outcome.method_switch_s = time.perf_counter() - started

    return await in_a_session(browser, url, path.name, timeout_s, steps)


async def hostile_session(browser, url: str, paths: list[Path], timeout_s: float) -> Outcome:
    """Uploads the hostile files together; must see the former hang refused and the huge PNG read."""
    async def steps(page, outcome: Outcome, timeout_ms: float) -> None:
        started = time.perf_counter()
        outcome.waiting_for = "the upload"
        await page.locator("input[type=file]").set_input_files([str(p) for p in paths])
        outcome.waiting_for = "the refusal of the former hang"
        await page.get_by_text(REFUSAL).first.wait_for(timeout=timeout_ms)
        outcome.waiting_for = "the huge PNG's verdict"
        await page.locator("p", has_text="Model output:").first.wait_for(timeout=timeout_ms)
        outcome.upload_to_heatmap_s = time.perf_counter() - started
        outcome.shown = "refused and read"

    return await in_a_session(browser, url, "+".join(p.name for p in paths), timeout_s, steps)


async def all_sessions(url: str, files: list[Path], timeout_s: float, pid: int,
                       hostile: list[list[Path]] = ()) -> tuple[list[Outcome], list[Outcome], dict]:
    from playwright.async_api import async_playwright
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            # one visit first: the server loads the model and warms up once, as it would before a ward's day
            warm = await browser.new_page()
            warm.set_default_timeout(timeout_s * 1000)
            await warm.goto(url)
            await warm.get_by_text("Upload one or more chest X-rays").wait_for(timeout=timeout_s * 1000)
            await asyncio.sleep(3)
            await warm.close()
            warmed = memory_kb(pid)  # the model loaded, no session holding anything
            outcomes = await asyncio.gather(*(hostile_session(browser, url, h, timeout_s) for h in hostile),
                                            *(session(browser, url, f, timeout_s) for f in files))
            return list(outcomes[len(hostile):]), list(outcomes[:len(hostile)]), warmed
        finally:
            await browser.close()


def expected_verdicts(files: list[Path]) -> dict[str, str]:
    """What each session must show, from ``covidviz predict``'s own predictor on that session's file."""
    from covidviz.model.predictor import Predictor
    predictor = Predictor()
    out = {}
    for path in files:
        prediction = predictor.predict_bytes(path.read_bytes(), path.name)
        # the page shows the class by the decision rule with that class's probability, not the largest one
        out[path.name] = f"{CLASS_TITLES[prediction.label]} ({prediction.probabilities[prediction.label]:.1%})"
    return out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_load_test(sessions: int, side: int, timeout_s: float = 240.0, dicom_every: int = 2,
                  hostile: int = 1) -> dict:
    with tempfile.TemporaryDirectory(prefix="covidviz-load-") as tmp:
        folder = Path(tmp)
        files = inputs(sessions, side, folder, dicom_every)
        hostiles = [hostile_files(folder)] * hostile
        process, url = start_server(folder / "streamlit.log")
        try:
            with urllib.request.urlopen(url, timeout=30):
                pass
            time.sleep(2)
            # in a thread of its own: the caller may already run an event loop (a test session driving a
            # browser through Playwright's sync API does), and asyncio.run needs none in its thread
            with ThreadPoolExecutor(max_workers=1) as pool:
                outcomes, hostile_outcomes, before = pool.submit(
                    asyncio.run, all_sessions(url, files, timeout_s, process.pid, hostiles)).result()
            after = memory_kb(process.pid)
            workers = worker_peaks_kb(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
        expected = expected_verdicts(files)
    times = [o.upload_to_heatmap_s for o in outcomes if o.upload_to_heatmap_s is not None]
    switches = [o.method_switch_s for o in outcomes if o.method_switch_s is not None]
    mixed = [o.file for o in outcomes if o.shown is not None and o.shown.split(" —")[0] != expected[o.file]]
    return {
        "sessions": sessions, "dicom_side_px": side,
        "server_rss_before_mb": round(before["VmRSS"] / 1024), "server_peak_mb": round(after["VmHWM"] / 1024),
        "worker_peaks_mb": {kind: round(kb / 1024) for kind, kb in sorted(workers.items())},
        "server_and_workers_peaks_added_mb": round((after["VmHWM"] + sum(workers.values())) / 1024),
        "upload_to_heatmap_s": {"p50": round(percentile(times, 50), 2), "p95": round(percentile(times, 95), 2),
                                "max": round(max(times, default=float("nan")), 2)},
        "method_switch_s": {"p50": round(percentile(switches, 50), 2), "max": round(max(switches, default=float("nan")), 2)},
        "errors": [f"{o.file}: {o.error}" for o in [*outcomes, *hostile_outcomes] if o.error],
        "hostile_sessions": len(hostile_outcomes),
        "hostile_s": [round(o.upload_to_heatmap_s, 2) for o in hostile_outcomes if o.upload_to_heatmap_s is not None],
        "mixed": mixed,
        "shown_equals_predict": sum(1 for o in outcomes if o.shown is not None) - len(mixed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--side", type=int, default=2400, help="DICOM side in px (4800: 46 MB, 16-bit)")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds a session may wait for each step")
    parser.add_argument("--dicom-every", type=int, default=2, help="every Nth session uploads a DICOM (1: all)")
    parser.add_argument("--hostile", type=int, default=1, help="sessions uploading hostile files meanwhile")
    args = parser.parse_args(argv)
    result = run_load_test(args.sessions, args.side, args.timeout, args.dicom_every, args.hostile)
    print(f"{result['sessions']} sessions at once ({args.side} px DICOMs and PNGs): server memory "
          f"{result['server_rss_before_mb']} MB with the model loaded, peak {result['server_peak_mb']} MB (workers' peaks "
          f"{result['worker_peaks_mb']} MB; all peaks added {result['server_and_workers_peaks_added_mb']} MB); "
          f"upload to heatmap p50 "
          f"{result['upload_to_heatmap_s']['p50']} s, p95 {result['upload_to_heatmap_s']['p95']} s, max "
          f"{result['upload_to_heatmap_s']['max']} s; method switch p50 {result['method_switch_s']['p50']} s; "
          f"errors {len(result['errors'])}; sessions showing another's result {len(result['mixed'])}; "
          f"{result['hostile_sessions']} hostile session(s) refused and read in {result['hostile_s']} s")
    print(json.dumps(result))
    return 0 if not result["errors"] and not result["mixed"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Fuzz campaign over :func:`covidviz.io.loading.load_xray`: every input must load or raise XrayInputError.

Seeds are real files (the repo's example chest X-rays as PNG, reduced PNG/JPEG copies of one, and small real
DICOMs from pydicom-data across transfer syntaxes); each execution mutates one seed (truncation, bit flips,
byte insert/delete, splices, PNG IHDR / JPEG SOF / DICOM header fields set to odd or huge values, wrong
extension) and runs it in a worker process with a per-input time limit, so a hang or a hard crash is caught
and the campaign goes on. Execution ``i`` is ``mutate(random.Random(base_seed + i))``: deterministic, so
a range can be resumed (``--start``) or split into chunks, and any finding can be replayed.

Findings (any exception other than XrayInputError, an Xray that breaks its own contract, a hang over the
time limit, a worker left holding most of its memory limit, a dead worker) are shrunk and written to
tests/fuzz_corpus/ with a README line, where tests/test_fuzz_loading.py replays them on every run.

    .venv/bin/python scripts/fuzz_load_xray.py                      # 100,000 executions, 1 process
    .venv/bin/python scripts/fuzz_load_xray.py -n 2000000 -j 8      # the scheduled run on a bigger machine
    .venv/bin/python scripts/fuzz_load_xray.py --start 50000 -n 50000 --state run.json   # resume a chunk
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import random
import struct
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the package beside it, not an installed one

from covidviz.io.decode_worker import address_space  # noqa: E402

CORPUS = ROOT / "tests" / "fuzz_corpus"
EXAMPLES = ROOT / "examples" / "xrays"
TIMEOUT_S = 5.0  # per input: a real upload of the largest accepted size decodes in well under this here
MEMORY_LIMIT = 2 * 2**30  # per worker: an input that needs more than this is a finding (MemoryError)
MAX_FIXTURE_BYTES = 16_384

# small real DICOMs (pydicom-data): every transfer syntax the loader promises plus the odd ones it must refuse
SEED_DICOMS = (
    "CT_small.dcm",  # explicit VR little endian, 128 x 128, 16-bit signed
    "MR_small.dcm",  # explicit VR little endian, 64 x 64
    "MR_small_implicit.dcm",  # implicit VR little endian
    "MR_small_bigendian.dcm",  # explicit VR big endian (retired)
    "MR_small_RLE.dcm",  # RLE lossless
    "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "JPEG2000.dcm",  # JPEG 2000, 1024 x 256
    "JPEG-lossy.dcm",  # JPEG extended (process 2 & 4), 12-bit
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, RGB
    "SC_rgb_rle.dcm",  # RLE, RGB
    "SC_ybr_full_422_uncompressed.dcm",  # YBR_FULL_422 uncompressed
    "image_dfl.dcm",  # deflated explicit VR little endian
    "ExplVR_BigEnd.dcm",  # big endian with meta
    "SC_rgb_rle_2frame.dcm",  # two frames (must be refused)
    "rtdose_1frame.dcm",  # RT dose, 32-bit, implicit VR
    "JPEGLSNearLossless_08.dcm",  # JPEG-LS near-lossless
)
NAMES = ("upload.png", "upload.jpg", "upload.jpeg", "upload.dcm", "UPLOAD.DICOM", "upload.dic", "upload",
         "upload.txt", "upload.png.dcm", "")
INTERESTING_32 = (0, 1, 2, 3, 63, 64, 65, 255, 256, 4096, 7072, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1)
INTERESTING_16 = (0, 1, 2, 3, 7, 8, 12, 15, 16, 63, 64, 255, 256, 4096, 7072, 32767, 32768, 65535)


@dataclass(frozen=True)
class Seed:
    name: str
    data: bytes
    filename: str


def seed_corpus() -> list[Seed]:
    """Real files, kept small so that one execution takes milliseconds."""
    import numpy as np
    from PIL import Image
    from pydicom.data import get_testdata_file

    seeds = []
    for path in sorted(EXAMPLES.glob("*.png")):
        seeds.append(Seed(path.name, path.read_bytes(), path.name))
    chest = Image.open(sorted(EXAMPLES.glob("*.png"))[0]).convert("L")
    for size in ((64, 64), (96, 80)):
        small = chest.resize(size)
        for fmt, ext, kwargs in (("PNG", "png", {}), ("JPEG", "jpg", {"quality": 85}),
                                 ("JPEG", "jpg", {"quality": 75, "progressive": True})):
            buf = io.BytesIO()
            small.save(buf, fmt, **kwargs)
            tag = "progressive" if kwargs.get("progressive") else fmt.lower()
            seeds.append(Seed(f"chest-{size[0]}x{size[1]}-{tag}.{ext}", buf.getvalue(), f"chest.{ext}"))
    buf = io.BytesIO()  # 16-bit PNG
    Image.fromarray(np.asarray(chest.resize((72, 64)), dtype=np.uint16) * 257).save(buf, "PNG")
    seeds.append(Seed("chest-72x64-16bit.png", buf.getvalue(), "chest16.png"))
    buf = io.BytesIO()  # RGB JPEG with EXIF orientation (exif_transpose runs on it)
    exif = Image.Exif()
    exif[0x0112] = 6
    chest.resize((64, 80)).convert("RGB").save(buf, "JPEG", exif=exif)
    seeds.append(Seed("chest-64x80-exif.jpg", buf.getvalue(), "chest-exif.jpg"))
    for name in SEED_DICOMS:
        path = get_testdata_file(name)
        if path:  # pydicom-data is a test dependency; a missing file only narrows the campaign
            seeds.append(Seed(name, Path(path).read_bytes(), name))
    return seeds


# ---------------------------------------------------------------- mutations (pure: bytes in, bytes out)

def _truncate(rng: random.Random, data: bytearray) -> bytearray:
    return data[:rng.randrange(len(data) + 1)] if data else data


def _bit_flips(rng: random.Random, data: bytearray) -> bytearray:
    for _ in range(rng.choice((1, 1, 2, 4, 8, 32))):
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return data


def _insert(rng: random.Random, data: bytearray) -> bytearray:
    at = rng.randrange(len(data) + 1)
    filler = rng.choice((b"\x00", b"\xff", bytes([rng.randrange(256)])))
    return data[:at] + filler * rng.choice((1, 2, 4, 16, 255, 4096)) + data[at:]


def _delete(rng: random.Random, data: bytearray) -> bytearray:
    if not data:
        return data
    at = rng.randrange(len(data))
    return data[:at] + data[at + rng.choice((1, 2, 4, 16, 256, 4096)):]


def _overwrite(rng: random.Random, data: bytearray) -> bytearray:
    if len(data) < 4:
        return data
    at = rng.randrange(len(data) - 3)
    if rng.random() < 0.5:
        data[at:at + 2] = struct.pack(rng.choice("<>") + "H", rng.choice(INTERESTING_16))
    else:
        data[at:at + 4] = struct.pack(rng.choice("<>") + "I", rng.choice(INTERESTING_32))
    return data


def _splice(rng: random.Random, data: bytearray, seeds: list[Seed]) -> bytearray:
    other = rng.choice(seeds).data
    return data[:rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1):]


def _png_header(rng: random.Random, data: bytearray) -> bytearray:
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or len(data) < 33 or data[12:16] != b"IHDR":
        return data
    field = rng.randrange(4)
    if field == 0:  # width and/or height
        at = rng.choice((16, 20))
        data[at:at + 4] = struct.pack(">I", rng.choice(INTERESTING_32))
        if rng.random() < 0.5:
            data[36 - at:40 - at] = struct.pack(">I", rng.choice(INTERESTING_32))
    elif field == 1:  # bit depth / colour type
        data[24 + rng.randrange(2)] = rng.choice((0, 1, 2, 3, 4, 6, 7, 8, 16, 32, 255))
    elif field == 2:  # compression / filter / interlace
        data[26 + rng.randrange(3)] = rng.choice((0, 1, 2, 255))
    else:  # IDAT size field
        at = data.find(b"IDAT")
        if at >= 4:
            data[at - 4:at] = struct.pack(">I", rng.choice(INTERESTING_32))
    if rng.random() < 0.9:  # a right CRC gets past Pillow's check to the decoder
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return data


def _jpeg_header(rng: random.Random, data: bytearray) -> bytearray:
    if not data.startswith(b"\xff\xd8"):
        return data
    sofs = [i for i in range(2, len(data) - 10) if data[i] == 0xFF and 0xC0 <= data[i + 1] <= 0xCF
            and data[i + 1] not in (0xC4, 0xC8, 0xCC)]
    if not sofs:
        return data
    at = rng.choice(sofs)
    field = rng.randrange(5)
    if field == 0:  # height
        data[at + 5:at + 7] = struct.pack(">H", rng.choice(INTERESTING_16))
    elif field == 1:  # width
        data[at + 7:at + 9] = struct.pack(">H", rng.choice(INTERESTING_16))
    elif field == 2:  # precision
        data[at + 4] = rng.choice((0, 1, 8, 12, 16, 255))
    elif field == 3:  # number of components
        data[at + 9] = rng.choice((0, 1, 2, 3, 4, 5, 255))
    else:  # another SOF type (progressive, lossless, arithmetic)
        data[at + 1] = rng.choice((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC7, 0xC9, 0xCB, 0xCF))
    return data


_TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.8.1", "1.2.3.4", "", "not-a-uid", "1.2.840.10008.1.2.4.50\x00junk",
)
_DICOM_FIELDS = {
    "Rows": (0, 1, 2, 63, 64, 65, 4096, 65535),
    "Columns": (0, 1, 2, 63, 64, 65, 4096, 65535),
    "BitsAllocated": (0, 1, 7, 8, 12, 16, 24, 32, 64, 65535),
    "BitsStored": (0, 1, 7, 8, 12, 16, 17, 33, 65535),
    "HighBit": (0, 7, 15, 31, 64, 65535),
    "SamplesPerPixel": (0, 1, 2, 3, 4, 255, 65535),
    "PixelRepresentation": (0, 1, 2, 65535),
    "PlanarConfiguration": (0, 1, 2, 65535),
    "NumberOfFrames": ("0", "-1", "1", "2", "abc", "1e9", "2147483648", ""),
    "PhotometricInterpretation": ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT",
                                  "PALETTE COLOR", "", "HSV", "ARGB"),
    "RescaleSlope": ("0", "-1", "1e308", "1e-308", "nan", "inf", "abc", ""),
    "RescaleIntercept": ("0", "-32768", "1e308", "nan", "-inf", ""),
    "WindowCenter": ("0", "-1", "1e308", "nan", "40\\400", ""),
    "WindowWidth": ("0", "-1", "1", "1e308", "nan", "abc"),
    "PixelSpacing": ("0\\0", "-1\\1", "nan\\nan", "1", "abc\\def", "1e308\\1e308"),
}


def _dicom_header(rng: random.Random, data: bytearray) -> bytearray:
    import warnings

    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(io.BytesIO(bytes(data)), force=True)
            ds.PixelData  # noqa: B018 (parse it now, so the write below does not fail on a lazy read)
        except Exception:  # an earlier mutation broke it beyond pydicom: leave it to the byte mutations
            return data
        try:
            for _ in range(rng.choice((1, 1, 2, 3))):
                choice = rng.randrange(len(_DICOM_FIELDS) + 3)
                if choice < len(_DICOM_FIELDS):
                    keyword = list(_DICOM_FIELDS)[choice]
                    setattr(ds, keyword, rng.choice(_DICOM_FIELDS[keyword]))
                elif choice == len(_DICOM_FIELDS):
                    if not hasattr(ds, "file_meta"):
                        ds.file_meta = pydicom.dataset.FileMetaDataset()
                    ds.file_meta.TransferSyntaxUID = rng.choice(_TRANSFER_SYNTAXES)
                elif choice == len(_DICOM_FIELDS) + 1:  # pixel data length mismatch
                    pixels = bytes(ds.PixelData)
                    ds.PixelData = rng.choice((pixels[:rng.randrange(len(pixels) + 1)], pixels + pixels, b"",
                                               pixels + b"\x00" * rng.choice((1, 2, 3))))
                else:
                    del ds.PixelData
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=False)
            return bytearray(buf.getvalue())
        except Exception:  # pydicom refuses to write this combination: try the byte mutations instead
            return data


BYTE_MUTATIONS = (_truncate, _bit_flips, _bit_flips, _insert, _delete, _overwrite, _overwrite)


def mutate(rng: random.Random, seeds: list[Seed]) -> tuple[bytes, str, str]:
    """One fuzz input from the seeds: (bytes, filename, a short description of what was done)."""
    seed = rng.choice(seeds)
    data = bytearray(seed.data)
    steps = []
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        pick = rng.random()
        if pick < 0.35:
            fn = {".png": _png_header, ".jpg": _jpeg_header}.get(Path(seed.name).suffix, _dicom_header)
        elif pick < 0.4:
            data = _splice(rng, data, seeds)
            steps.append("splice")
            continue
        else:
            fn = rng.choice(BYTE_MUTATIONS)
        data = fn(rng, data)
        steps.append(fn.__name__.strip("_"))
    filename = seed.filename
    if rng.random() < 0.15:
        filename = rng.choice(NAMES)
        steps.append("rename")
    if rng.random() < 0.05 and data[128:132] == b"DICM":  # a bare data set: sniffed by extension only
        data = data[132:]
        steps.append("strip-preamble")
    return bytes(data), filename, f"{seed.name}: {'+'.join(steps)}"


# ---------------------------------------------------------------- the worker: one input at a time, watched

def check(data: bytes, filename: str) -> tuple[str, str]:
    """Run load_xray once: ("loaded" | "rejected" | "crashed" | "invalid", detail). Runs in the worker."""
    import traceback

    import numpy as np

    from covidviz.errors import ACCEPTED, XrayInputError
    from covidviz.io.loading import load_xray
    from covidviz.io.xray import MAX_PIXELS, MIN_SIDE

    try:
        xray = load_xray(data, filename)
    except XrayInputError as exc:
        text = str(exc)
        if not exc.problem.strip() or ACCEPTED not in text or "Traceback" in text:
            return "invalid", f"XrayInputError without a clear message: {text[:200]!r}"
        return "rejected", exc.problem[:200]
    except KeyboardInterrupt:  # the campaign being stopped, not a finding
        raise
    except BaseException as exc:  # noqa: BLE001 (anything else is exactly what the campaign looks for)
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"
        return "crashed", f"{type(exc).__name__}: {str(exc)[:160]} [{where}]"
    pixels = xray.pixels
    problems = []
    if not isinstance(pixels, np.ndarray) or pixels.ndim != 2 or pixels.dtype != np.float32:
        problems.append(f"pixels are {type(pixels).__name__} {getattr(pixels, 'shape', '')} "
                        f"{getattr(pixels, 'dtype', '')}, not a 2-D float32 array")
    elif not np.isfinite(pixels).all():
        problems.append("pixels are not all finite")
    elif pixels.size and (pixels.min() < 0 or pixels.max() > 1):
        problems.append(f"pixels span [{pixels.min()}, {pixels.max()}], not [0, 1]")
    elif min(pixels.shape) < MIN_SIDE or pixels.size > MAX_PIXELS:
        problems.append(f"pixels are {pixels.shape}, outside the accepted size")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in xray.info.items()):
        problems.append("info is not str -> str")
    if not all(isinstance(w, str) for w in xray.warnings):
        problems.append("warnings are not all str")
    return ("invalid", "; ".join(problems)) if problems else ("loaded", f"{pixels.shape[1]} x {pixels.shape[0]}")


def _serve(conn) -> None:  # noqa: ANN001 (a multiprocessing Connection)
    import resource
    import warnings

    warnings.simplefilter("ignore")  # Pillow and pydicom warn about every oddity in fuzzed input
    import covidviz.io.loading  # noqa: F401 (import once, before the first timed input)

    # The limit is on top of what the worker holds once started: a spawned child inherits the parent's
    # environment, and under a long test session that started Ray it imports more (pyarrow, pandas: 1.4 GB of
    # address space) than when run alone; an absolute limit would flag every input as a memory finding.
    baseline = address_space()
    resource.setrlimit(resource.RLIMIT_AS, (baseline + MEMORY_LIMIT, baseline + MEMORY_LIMIT))
    conn.send("ready")
    seeds: list[Seed] | None = None
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request[0] == "index":  # mutate here, not in the driver: the driver's threads share one GIL
            seeds = seeds or seed_corpus()
            data, filename, _ = mutate(random.Random(request[1]), seeds)
        else:
            _, data, filename = request
        outcome = check(data, filename)
        held = address_space() - baseline
        if held > MEMORY_LIMIT * 0.75:  # a decoder that grabbed (or leaked) most of the limit: a DoS on a server
            outcome = ("memory", f"the worker holds {held / 2**30:.1f} GiB after this input ({outcome[0]}: "
                                 f"{outcome[1][:120]})")
        conn.send(outcome)


class Worker:
    """A child process running :func:`check`; an input over ``timeout`` seconds kills and replaces it."""

    def __init__(self, timeout: float = TIMEOUT_S) -> None:
        self.timeout = timeout
        self.slowest = 0.0  # seconds, over the inputs that answered: the margin below the time limit
        self._ctx = multiprocessing.get_context("spawn")  # no inherited threads (torch, pytest) in the child
        self._start()

    def _start(self) -> None:
        self._conn, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_serve, args=(child,), daemon=True)
        self._proc.start()
        child.close()
        if not self._conn.poll(120) or self._conn.recv() != "ready":
            raise RuntimeError("the fuzz worker did not start")

    def run(self, data: bytes, filename: str) -> tuple[str, str]:
        """The outcome of loading ``data`` uploaded as ``filename``."""
        return self._ask(("input", data, filename))

    def run_index(self, value: int) -> tuple[str, str]:
        """The outcome of the input ``mutate(random.Random(value), seed_corpus())``, built in the worker."""
        return self._ask(("index", value))

    def _ask(self, request: tuple) -> tuple[str, str]:
        try:
            self._conn.send(request)
            began = time.monotonic()
            if self._conn.poll(self.timeout):
                answer = self._conn.recv()
                self.slowest = max(self.slowest, time.monotonic() - began)
                if answer[0] != "memory":
                    return answer
                self._restart()  # start the next input from a clean address space
                return answer
            outcome = ("hung", f"no answer within {self.timeout:.0f} s")
        except (EOFError, OSError):  # the worker died: a hard crash (segfault, abort, out of memory)
            self._proc.join(5)
            outcome = ("crashed", f"worker died (exit code {self._proc.exitcode})")
        self._restart()
        return outcome

    def _restart(self) -> None:
        self._proc.kill()
        self._proc.join()
        self._conn.close()
        self._start()

    def close(self) -> None:
        self._conn.close()
        self._proc.kill()
        self._proc.join()


FINDINGS = ("crashed", "invalid", "hung", "memory")


def signature(outcome: str, detail: str) -> str:
    """What makes two findings the same bug: the outcome, exception type and where it was raised. A hang or a
    memory finding has no traceback, so each is its own (the fixtures show what they have in common)."""
    if outcome in ("hung", "memory"):
        return f"{outcome} {hashlib.sha256(detail.encode()).hexdigest()[:8]} {time.monotonic_ns()}"
    head = detail.split(":", 1)[0]
    where = detail[detail.rfind("["):] if "[" in detail else ""
    return f"{outcome} {head} {where}".strip()


def shrink(worker: Worker, data: bytes, filename: str, sig: str, budget: int = 300) -> bytes:
    """A smaller input with the same finding signature (tail cuts, then chunk deletions)."""
    if sig.startswith("hung"):
        return data  # each try would cost the time limit
    tries = 0

    def same(candidate: bytes) -> bool:
        nonlocal tries
        tries += 1
        return signature(*worker.run(candidate, filename)) == sig

    chunk = max(1, len(data) // 2)
    while chunk >= 1 and tries < budget:
        changed = False
        at = 0
        while at < len(data) and tries < budget:
            candidate = data[:at] + data[at + chunk:]
            if candidate and same(candidate):
                data, changed = candidate, True
            else:
                at += chunk
        if not changed:
            chunk //= 2
    return data


def save_finding(data: bytes, filename: str, outcome: str, detail: str, origin: str,
                 corpus: Path = CORPUS) -> Path:
    """Write a regression fixture and its README line; the name says what it raised."""
    corpus.mkdir(parents=True, exist_ok=True)
    head = detail.split(":", 1)[0].split()[0] if detail else outcome
    suffix = Path(filename).suffix.lower() or ".bin"
    path = corpus / f"{outcome}-{head}-{hashlib.sha256(data).hexdigest()[:10]}{suffix}"
    path.write_bytes(data)
    with (corpus / "README.md").open("a") as readme:
        readme.write(f"- `{path.name}`: {outcome}: {detail} (from {origin}, uploaded as {filename or 'no name'!r})\n")
    return path


# ---------------------------------------------------------------- the campaign

def campaign(start: int, count: int, processes: int, base_seed: int, timeout: float, corpus: Path,
             state: Path | None, report_every: float = 30.0) -> dict[str, int]:
    seeds = seed_corpus()
    counts = {"loaded": 0, "rejected": 0, "crashed": 0, "invalid": 0, "hung": 0, "memory": 0}
    seen: set[str] = set()
    slowest = [0.0]
    lock = threading.Lock()
    done = [0]
    next_index = [start]
    began = time.monotonic()

    def drive() -> None:
        worker = Worker(timeout)
        try:
            while True:
                with lock:
                    i = next_index[0]
                    if i >= start + count:
                        return
                    next_index[0] += 1
                outcome, detail = worker.run_index(base_seed + i)
                with lock:
                    slowest[0] = max(slowest[0], worker.slowest)
                    counts[outcome] += 1
                    done[0] += 1
                    sig = signature(outcome, detail)
                    new = outcome in FINDINGS and sig not in seen
                    seen.add(sig)
                if outcome in FINDINGS and not new:  # every occurrence is logged with its index, so each replays
                    print(f"FINDING again at {i} (replay with --seed {base_seed} --start {i} -n 1): {outcome}: "
                          f"{detail}", flush=True)
                if new:
                    data, filename, origin = mutate(random.Random(base_seed + i), seeds)
                    small = shrink(worker, data, filename, sig)
                    if len(small) <= MAX_FIXTURE_BYTES:
                        path = save_finding(small, filename, outcome, detail, f"execution {i}, {origin}", corpus)
                        print(f"FINDING at {i}: {outcome}: {detail} -> {path}", flush=True)
                    else:
                        print(f"FINDING at {i} ({len(small)} bytes, too big to keep; replay with --start {i} -n 1): "
                              f"{outcome}: {detail} ({origin})", flush=True)
        finally:
            worker.close()

    threads = [threading.Thread(target=drive, daemon=True) for _ in range(processes)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        for thread in threads:
            thread.join(report_every)
        _report(counts, done[0], time.monotonic() - began, slowest[0])
        if state is not None:
            state.write_text(json.dumps({"base_seed": base_seed, "start": start, "done": done[0],
                                         "resume_at": start + done[0] - processes, "counts": counts,
                                         "slowest_s": round(slowest[0], 3)}))
    return counts


def _report(counts: dict[str, int], done: int, elapsed: float, slowest: float) -> None:
    print(f"{done} executions in {elapsed:.0f} s ({done / max(elapsed, 1e-9):.1f}/s): "
          + ", ".join(f"{k} {v}" for k, v in counts.items()) + f"; slowest input {slowest:.2f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--executions", type=int, default=100_000)
    parser.add_argument("--start", type=int, default=0, help="first execution index (resume a range)")
    parser.add_argument("-j", "--processes", type=int, default=1)
    parser.add_argument("--seed", type=int, default=20260101, help="base seed: execution i uses seed + i")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per input before it is a hang")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="where findings are written")
    parser.add_argument("--state", type=Path, help="JSON progress file, rewritten as the run goes")
    parser.add_argument("--report-every", type=float, default=30.0, help="seconds between progress lines")
    args = parser.parse_args(argv)
    counts = campaign(args.start, args.executions, args.processes, args.seed, args.timeout, args.corpus,
                      args.state, args.report_every)
    return 1 if any(counts[k] for k in FINDINGS) else 0


if __name__ == "__main__":
    sys.exit(main())

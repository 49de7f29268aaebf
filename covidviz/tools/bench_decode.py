"""``python -m covidviz bench-decode``: what decoding in an isolated worker costs per upload.

The same real files are decoded in-process (``load_xray``) and through a worker (``read_untrusted``), timed in
turn within each round; the difference is the price of isolation (pipe, shared memory, two copies of the
pixels). JSON on the last line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from covidviz.io.isolation import DecodePool
from covidviz.io.loading import load_xray
from covidviz.paths import EXAMPLES_DIR
from covidviz.timing import interleaved_medians


def bench_files() -> dict[str, bytes]:
    """A real example PNG, real compressed DICOMs from pydicom-data, and a 46 MB 16-bit DICOM made from a real
    X-ray (the size of the largest uploads the dashboard accepts)."""
    from pydicom.data import get_testdata_file

    from covidviz.interop.sample_dicom import enlarged_radiograph

    png = sorted(EXAMPLES_DIR.glob("*.png"))[0]
    files = {f"PNG 256 px ({png.stat().st_size // 1024} KB)": png.read_bytes()}
    for name, label in (("JPEG2000.dcm", "DICOM JPEG 2000 1024 x 256"), ("CT_small.dcm", "DICOM 128 x 128")):
        path = get_testdata_file(name)
        if path:
            files[label] = Path(path).read_bytes()
    files["DICOM 16-bit 4800 px (46 MB)"] = enlarged_radiograph(png.read_bytes(), 4800)
    return files


def run_bench_decode(repeats: int, out: TextIO) -> int:
    pool = DecodePool(workers=1)
    try:
        rows = {}
        for label, data in bench_files().items():
            times = interleaved_medians({"in_process": lambda d=data: load_xray(d, "x.dcm"),
                                         "isolated": lambda d=data: pool.decode(d, "x.dcm")}, repeats)
            rows[label] = {"bytes": len(data), "in_process_ms": round(times["in_process"] * 1000, 1),
                           "isolated_ms": round(times["isolated"] * 1000, 1),
                           "isolation_cost_ms": round((times["isolated"] - times["in_process"]) * 1000, 1)}
            print(f"{label}: in-process {rows[label]['in_process_ms']} ms, isolated {rows[label]['isolated_ms']} ms "
                  f"(+{rows[label]['isolation_cost_ms']} ms)", file=out)
    finally:
        pool.close()
    print(json.dumps({"repeats": repeats, "files": rows}), file=out)
    return 0

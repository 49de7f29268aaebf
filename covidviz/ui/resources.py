"""Process-wide cached resources: the model is loaded and verified once per server process, not per rerun.

The model is imported inside the loaders, so pages that never run the model (the evaluation pages, and the
Diagnose page before the first upload) render without paying for it; the predictor is lean, so a server whose
engines are ONNX Runtime or OpenVINO does not load torch at all unless a library heatmap method is asked for.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

if TYPE_CHECKING:
    from covidviz.model.ood import OodGuard
    from covidviz.model.predictor import Predictor


from covidviz.paths import weights_dir  # noqa: E402,F401  (re-exported for the pages)

log = logging.getLogger(__name__)


@st.cache_resource(show_spinner="Loading and verifying the model…")
def get_predictor(folder: Path) -> Predictor:
    """The verified model of ``folder``: an argument, so that the cache keys on it and a changed
    ``COVIDVIZ_WEIGHTS`` gives the model it names, not the one loaded first."""
    from covidviz.model.predictor import Predictor
    predictor = Predictor(folder, lean=True)
    trim_heap()
    return predictor


def trim_heap() -> None:
    """Hand back to the system the memory that loading used and freed (the engines' agreement checks and
    timings): glibc keeps freed memory for reuse, and ``malloc_trim`` returns about 50 MB of it here
    (``scripts/memory_breakdown.py``). A no-op where the C library is not glibc."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@st.cache_resource(show_spinner=False)
def warm_up(folder: Path) -> bool:
    """Pay the first request's costs (imports, kernel selection, colormaps, the decoder's and the audit
    database's first use) once per process and model, while the first user is still choosing a file, so that
    first upload is as fast as every later one: a detector-sized DICOM goes the way an upload goes."""
    predictor = get_predictor(folder)
    import covidviz.ui.diagnose_view  # noqa: F401  (the Diagnose page's rendering imports)
    from covidviz.explain.overlay import downscale, render, to_uint8
    from covidviz.explain.reading import heatmap, heatmap_on_original, read_xray
    from covidviz.io.decode_worker import detector_sized_dicom
    from covidviz.io.images import jpeg_bytes, png_bytes
    from covidviz.io.isolation import read_untrusted

    # on a thread of its own: a database that is down may take its connect timeout, and uploads must not wait
    threading.Thread(target=_open_audit_database, name="covidviz-audit-warm-up", daemon=True).start()
    try:
        xray = read_untrusted(detector_sized_dicom(), "warm-up.dcm")  # starts the decoder processes too
        reading = read_xray(predictor, xray, "warm-up", None)
        gray = downscale(xray.pixels)
        cam = heatmap_on_original(reading, heatmap(reading, predictor, "Grad-CAM", 0), gray.shape)
        png_bytes(to_uint8(gray))
        jpeg_bytes(render(gray, cam, "heatmap", "inferno", 0.45, 0.0))
    except Exception:  # noqa: BLE001  (a warm-up only saves time: the page works without it; the log says why)
        log.exception("warm-up failed; the first upload pays its costs instead")
        return False
    finally:
        trim_heap()
    return True


def _open_audit_database() -> None:
    """Connect to the audit database and migrate it now: the first upload's record would otherwise do it on the
    recorder's thread while the page draws that upload (measured: its heatmap took 130 ms to draw instead of 40).
    A database that is down is the recorder's to report, on the first record, as always."""
    from covidviz.audit.db import migrate
    try:
        migrate()
    except Exception:  # noqa: BLE001  (never a reason for the page not to work)
        pass


@st.cache_resource(show_spinner=False)
def get_guard(folder: Path) -> OodGuard | None:
    """The out-of-distribution guard ``evaluate`` fitted for ``folder`` (None if it has none); verified
    against its sha256 record, :class:`WeightsError` when altered."""
    from covidviz.model.ood import load_guard
    return load_guard(folder)


def upload_limit_mb() -> int:
    return int(st.get_option("server.maxUploadSize"))

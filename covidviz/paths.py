"""Every location the program knows, in one place (nothing else builds paths from ``__file__``)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_DIR = ROOT / "weights"
EXAMPLES_DIR = ROOT / "examples" / "xrays"
DEFAULT_DATA_DIR = ROOT.parent / "shared" / "cxr"

COMPARISON_DIR = "comparison"  # under a weights folder: comparison.json and one folder per compared run
HISTORY_DIR = "history"  # under a weights folder: the earlier shipped models, v1, v2, ..., each a weights folder


def weights_dir() -> Path:
    """The shipped weights, or ``COVIDVIZ_WEIGHTS`` when it points at a retrained model."""
    return Path(os.environ.get("COVIDVIZ_WEIGHTS") or WEIGHTS_DIR)


def latest_previous(weights: Path) -> Path | None:
    """The newest earlier model kept under ``<weights>/history/`` (the highest ``vN`` with a sidecar), or None."""
    kept = [p for p in (Path(weights) / HISTORY_DIR).glob("v*") if p.name[1:].isdigit() and (p / "model.json").is_file()]
    return max(kept, key=lambda p: int(p.name[1:])) if kept else None


def cache_dir() -> Path:
    """Files derived from verified weights (the ONNX export): ``COVIDVIZ_CACHE``, else ~/.cache/covidviz.
    Never a download cache: everything here is rebuilt from the shipped weights when missing or altered."""
    return Path(os.environ.get("COVIDVIZ_CACHE") or Path.home() / ".cache" / "covidviz")


def site_profile_path() -> Path:
    """The site's calibration profile: ``COVIDVIZ_SITE_PROFILE``, else ~/.covidviz/site_profile.json. Never
    under weights/: a profile belongs to one hospital's installation, not to the shipped model."""
    return Path(os.environ.get("COVIDVIZ_SITE_PROFILE") or Path.home() / ".covidviz" / "site_profile.json")

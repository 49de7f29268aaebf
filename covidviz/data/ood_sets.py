"""Offline images that are not chest radiographs, for measuring the out-of-distribution guard.

Both come from installed packages, never the network: scikit-image's bundled sample pictures
(photographs, text, micrographs) and the DICOM test files of pydicom and pydicom-data (CT, MR,
ultrasound, nuclear medicine, an extremity radiograph, secondary captures). Chest DICOMs among
them are left out. Variants of one image (other transfer syntaxes) count once.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from covidviz.errors import XrayInputError
from covidviz.io.loading import load_xray
from covidviz.io.xray import Xray

SKIMAGE_PICTURES = ("astronaut", "brick", "camera", "cat", "chelsea", "coffee", "coins", "grass", "gravel",
                    "hubble_deep_field", "immunohistochemistry", "moon", "page", "rocket", "text", "retina",
                    "clock", "horse", "logo", "colorwheel")


def skimage_pictures() -> dict[str, Xray]:
    """The bundled scikit-image pictures that are present, through the upload path (as PNG bytes)."""
    import skimage.data
    out = {}
    for name in SKIMAGE_PICTURES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                array = getattr(skimage.data, name)()
        except Exception:  # not bundled in this version (some are fetched on demand, which we never do)
            continue
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        buf = io.BytesIO()
        Image.fromarray(array.astype(np.uint8)).save(buf, format="PNG")
        try:
            out[f"skimage:{name}"] = load_xray(buf.getvalue(), f"{name}.png")
        except XrayInputError:
            continue
    return out


def _dicom_folders() -> list[Path]:
    folders = []
    try:
        import pydicom
        folders.append(Path(pydicom.__file__).parent / "data" / "test_files")
    except ImportError:
        pass
    try:
        import data_store  # the pydicom-data package
        folders.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    return folders


def non_chest_dicoms() -> dict[str, Xray]:
    """Single-frame, decodable, non-chest DICOM test images, one per family of variants."""
    out: dict[str, Xray] = {}
    families: set[str] = set()
    for folder in _dicom_folders():
        for path in sorted(folder.glob("*.dcm")):
            family = path.stem.split("_")[0]
            if family in families:
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    xray = load_xray(path.read_bytes(), path.name)
            except XrayInputError:
                continue
            if xray.info.get("body part", "").upper() == "CHEST":
                continue
            families.add(family)
            out[f"dicom:{path.name}"] = xray
    return out

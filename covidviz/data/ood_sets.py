"""Offline images that are not chest radiographs, for measuring the out-of-distribution guard.

All come from installed packages, never the network: scikit-image's bundled sample pictures
(photographs, text, micrographs) and the DICOM test files of pydicom and pydicom-data (CT, MR,
ultrasound, nuclear medicine, an extremity radiograph, secondary captures). Chest DICOMs among
them are left out. Variants of one image (other transfer syntaxes) count once.

:func:`grayscale_pictures` and :func:`documents_and_screens` are held out: no threshold is placed with
them. The first turns those pictures and matplotlib's sample pictures grayscale, as a scanner, a phone's
monochrome mode or a PACS export would, so the colour check cannot catch them; the second holds pages, forms,
screens and charts rendered here (:mod:`covidviz.data.documents`). Both add each image's centre and negative.
"""

from __future__ import annotations

import hashlib
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


def _skimage_arrays() -> dict[str, np.ndarray]:
    """The bundled scikit-image pictures that are present, as 8-bit arrays (gray or colour)."""
    import skimage.data
    out = {}
    for name in SKIMAGE_PICTURES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                array = np.asarray(getattr(skimage.data, name)())
        except Exception:  # not bundled in this version (some are fetched on demand, which we never do)
            continue
        out[name] = array.astype(np.uint8) * 255 if array.dtype == bool else array.astype(np.uint8)
    return out


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    return buf.getvalue()


def _uploads(arrays: dict[str, np.ndarray]) -> dict[str, Xray]:
    """Each array through the upload path as a PNG named after it; those the loader refuses are left out."""
    out = {}
    for name, array in arrays.items():
        try:
            out[name] = load_xray(_png(array), f"{name.split(':')[1]}.png")
        except XrayInputError:
            continue
    return out


def skimage_pictures() -> dict[str, Xray]:
    """The bundled scikit-image pictures that are present, through the upload path (as PNG bytes)."""
    return _uploads({f"skimage:{name}": array for name, array in _skimage_arrays().items()})


MATPLOTLIB_PICTURES = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png")


def _gray_variants(name: str, gray: np.ndarray) -> dict[str, np.ndarray]:
    """The picture, its centre (the middle two thirds of each side) and its negative, all 8-bit gray."""
    h, w = gray.shape
    return {name: gray, f"{name} centre": gray[h // 6:h - h // 6, w // 6:w - w // 6], f"{name} negative": 255 - gray}


def grayscale_pictures() -> dict[str, Xray]:
    """Held-out non-chest pictures in grayscale, through the upload path: scikit-image's bundled pictures (each
    once: two names can hold one picture) and matplotlib's sample pictures, each with its centre and negative
    (those too small to read are left out)."""
    import matplotlib
    grays: dict[str, np.ndarray] = {}
    seen: set[bytes] = set()
    for name, array in _skimage_arrays().items():
        gray = np.asarray(Image.fromarray(array).convert("L"))
        if (digest := hashlib.sha256(gray.tobytes()).digest()) in seen:  # ``cat`` is ``chelsea`` under another name
            continue
        seen.add(digest)
        grays.update(_gray_variants(f"gray:{name}", gray))
    folder = Path(matplotlib.get_data_path()) / "sample_data"
    for name in MATPLOTLIB_PICTURES:
        if (folder / name).is_file():
            with Image.open(folder / name) as picture:
                grays.update(_gray_variants(f"gray:{Path(name).stem}", np.asarray(picture.convert("L"))))
    return _uploads(grays)


def documents_and_screens() -> dict[str, Xray]:
    """Held-out rendered documents and screens, each with its centre and negative, through the upload path."""
    from covidviz.data.documents import rendered_documents
    grays: dict[str, np.ndarray] = {}
    for name, gray in rendered_documents().items():
        grays.update(_gray_variants(f"doc:{name}", gray))
    return _uploads(grays)


def dicom_test_folders() -> list[Path]:
    """The folders of DICOM test files that pydicom and pydicom-data install (those present)."""
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
    for folder in dicom_test_folders():
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

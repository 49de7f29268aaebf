"""Make ``import torchvision`` work with the CPU-only torch wheel.

PyPI's torchvision wheel is built against CUDA; next to the CPU torch its C++
extension fails to load, and ``torchvision/_meta_registrations.py`` then dies
with "operator torchvision::nms does not exist" while registering fake kernels.
Declaring the two operator schemas it registers against lets the pure-Python
parts (models, transforms) import. The C++ ops themselves (``torchvision.ops``,
``torchvision.io``) stay unavailable, so covidviz decodes images with Pillow,
OpenCV and pydicom. Nothing is declared when the extension loads normally.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys

import torch

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library: torch.library.Library | None = None  # kept alive: dropping it unregisters the schemas


def _extension_loads() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # torchvision absent: nothing to patch, the import error will say so
    folder = list(spec.submodule_search_locations)[0]
    for path in glob.glob(os.path.join(folder, "_C*.so")) + glob.glob(os.path.join(folder, "_C*.pyd")):
        try:
            torch.ops.load_library(path)
            return True
        except (OSError, ImportError, RuntimeError):
            return False
    return False


def ensure_torchvision_importable() -> bool:
    """Declare the missing schemas if needed; return True when a patch was applied."""
    global _library
    if _library is not None or "torchvision" in sys.modules:
        return _library is not None
    if _extension_loads():
        return False
    _library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        _library.define(schema)
    return True

"""Lung fields: a small U-Net (trained by :mod:`covidviz.training.lungs` on ``lungs/`` masks), its
inference, and the pure geometry built on its masks. Imports nothing from the layers above it.

The classifier reads only the lung field, the Diagnose page outlines it, the CAM energy inside it is
reported, and an image with no plausible pair of lungs is flagged.
"""

from covidviz._lazy import lazy_exports

_EXPORTS = {
    "LungCheck": "field", "check_lungs": "field", "field_box": "field", "lung_energy": "field",
    "build_segmenter": "network", "segmenter_input": "network", "segmenter_square": "network",
    "LungSegmenter": "segmenter", "load_segmenter": "segmenter",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

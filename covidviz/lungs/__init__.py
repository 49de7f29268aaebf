"""Lung fields: a small U-Net (trained by :mod:`covidviz.training.lungs` on ``lungs/`` masks), its
inference, and the pure geometry built on its masks. Imports nothing from the layers above it.

The classifier reads only the lung field, the Diagnose page outlines it, the CAM energy inside it is
reported, and an image with no plausible pair of lungs is flagged.
"""

from covidviz._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    field=("LungCheck", "check_lungs", "check_texture", "confidence_floor", "field_box", "flat_limit", "flat_share",
           "lung_energy", "map_on_grid"),
    network=("build_segmenter", "segmenter_input", "segmenter_square"),
    segmenter=("LungSegmenter", "load_segmenter"),
)

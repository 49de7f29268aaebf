"""Class activation maps: a hook-free fast Grad-CAM and pytorch-grad-cam's methods on private model copies.

The fast path is what the Diagnose page shows by default; the library methods serve the method picker.
Neither registers hooks on the shared model, so concurrent sessions cannot see each other's maps.
"""

from covidviz.cam.fast_gradcam import gradcam_all_classes
from covidviz.cam.library import METHODS, SLOW_METHODS, library_cam
from covidviz.cam.scaling import normalise_like_library

__all__ = ["gradcam_all_classes", "library_cam", "METHODS", "SLOW_METHODS", "normalise_like_library"]

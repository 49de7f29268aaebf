"""Training the classifier: resumable runs, sampling, and radiograph augmentation.
"""

from covidviz._lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "train",
    "train": "train",
    "augment": "augment",
    "random_theta": "augment",
    "warp": "augment",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

"""Training, resumable across sessions: the classifier (sampling, precision choice, export with its history)
and the lung segmenter, with the radiograph augmentation both use. Above ``model`` and ``lungs``: nothing
there imports training.
"""

from covidviz._lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "train",
    "train": "train",
    "augment": "augment",
    "random_theta": "augment",
    "warp": "augment",
    "LungTrainConfig": "lungs",
    "train_lungs": "lungs",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

"""Training, resumable across sessions: the classifier (sampling, precision choice, export with its history)
and the lung segmenter, with the radiograph augmentation both use; fine-tunes averaged into one model. Above
``model`` and ``lungs``: nothing there imports training.
"""

from covidviz._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    config=("TrainConfig",),
    train=("train",),
    augment=("augment", "random_theta", "warp"),
    lungs=("LungTrainConfig", "train_lungs"),
    recipes=("Recipe", "REDUCED_CPU"),
    weight_average=("average_states", "write_average"),
)

"""How a model was made, stage by stage, in the words the model card and README use. Most stages are training
runs, named by their best epoch; two make a model without epochs: a weight average of fine-tunes
(``average-weights``) and a refit of the linear head on frozen features (``scripts/refit_head.py``)."""

from __future__ import annotations

from typing import Any

WEIGHT_AVERAGE = "weight average"
HEAD_REFIT = "head refit"


def stage_text(stage: dict[str, Any], detail: bool = True) -> str:
    """One stage of a sidecar's ``training.stages``: a training run by its best epoch (with ``detail``, also its
    epoch limit, peak learning rate, batch and precision); a head refit or a weight average by what made it."""
    kind = stage["stage"]
    if kind == HEAD_REFIT:
        views = int(stage.get("acquisition_views") or 0)
        readings = (f"each read clean and through {views} random acquisition transform{'s' if views > 1 else ''}"
                    if views else "each read once, clean")
        return (f"{kind} (the linear head refitted on the frozen pooled features of {stage['films']:,} training "
                f"films, {readings}"
                + (f"; logistic regression, {_refit_weighting(stage)}, C {stage['C']:g} by 5-fold cross-validation "
                   "over training patients" if detail else "")
                + (f"; then refined with the penalty on Grad-CAM outside the lungs, weight {stage['outside_lungs']:g} "
                   f"chosen on validation, read on the maps of {stage['map_films']:,} training films"
                   if detail and stage.get("outside_lungs") else "") + ")")
    if kind == WEIGHT_AVERAGE:
        return f"{kind} of {len(stage['members'])} fine-tunes (equal or given shares; one model's cost)"
    epoch = stage.get("best_epoch") or stage.get("epochs_run")
    if not detail:
        return f"{kind} (best epoch {epoch})"
    return (f"{kind} (best at epoch {epoch} of at most {stage.get('epochs')}, peak lr {stage.get('lr')}, "
            f"batch {stage.get('batch_size')}, bf16 autocast {'on' if stage.get('fast') else 'off'})")


def _refit_weighting(stage: dict[str, Any]) -> str:
    if stage.get("adult_pneumonia") is None:
        return "classes balanced"
    return (f"films weighted as training samples them (classes equal, adult sources {stage['adult_pneumonia']:.0%} "
            "of pneumonia)")

"""Is the classifier's head what limits it, or its features? Refit the linear head of a shipped model on the
frozen features of its own training films, and write the result as a run checkpoint for
``scripts/recipe_ablation.py`` (``FILE:ARCH:SIZE``).

The head the network was trained with read augmented films (acquisition transforms, geometry, label smoothing)
together with everything beneath it. This one reads each training film once, clean, through the one preprocessing
path and the model's own forward pass (the pooled features its head reads), and is a multinomial logistic
regression with balanced classes (scikit-learn). Its regularisation C is chosen by 5-fold cross-validation over
the training films grouped by patient (macro F1), so no validation film chooses anything; the standardisation
is folded into the head, which stays one linear layer over the same features: one model's cost.
``--acquisition-views K`` adds K readings of every training film, each through one acquisition transform drawn
as training draws them (seeded), so the head also learns from films made differently.
``--adult-pneumonia SHARE`` weighs the films as training samples them instead of balancing classes alone: every
class equally, sources within a class by the square root of their size, and adult sources (NIH, ieee8023) given
SHARE of the pneumonia class's weight, the children's films (Kermany) the rest.
``--features FILE`` keeps the pooled features (an ``.npz`` named by the model and the readings), so refits that
differ only in how they weigh or regularise skip the forward passes.

Usage:

    python scripts/refit_head.py --data ../shared/cxr --weights weights --out ~/covidviz-runs/v3-head/best.pt
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the package beside it, not an installed one

C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
CHUNK = 256  # films per forward pass: the 16 x 16 x 1024 maps of all 6,271 would take 6.6 GB


def folded_head(scaler_mean: np.ndarray, scaler_scale: np.ndarray, coef: np.ndarray, intercept: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """The weight and bias of one linear layer equal to standardising, then the fitted logistic regression:
    W (x - m) / s + b = (W / s) x + (b - W m / s)."""
    weight = coef / scaler_scale
    return weight, intercept - weight @ scaler_mean


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/cxr")
    parser.add_argument("--weights", default=str(ROOT / "weights"))
    parser.add_argument("--out", required=True, help="the run checkpoint to write")
    parser.add_argument("--acquisition-views", type=int, default=0,
                        help="readings of each training film through a random acquisition transform (default 0)")
    parser.add_argument("--c", type=float, nargs="+", default=list(C_GRID), help="the values of C to cross-validate")
    parser.add_argument("--adult-pneumonia", type=float, metavar="SHARE",
                        help="weigh films as training samples them, adult sources SHARE of the pneumonia class "
                             "(default: classes balanced, films within a class equal)")
    parser.add_argument("--features", help="an .npz to keep the pooled features in and read them from")
    args = parser.parse_args(argv)

    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from covidviz.evaluation.artifacts.evaluate import records_for_splits
    from covidviz.model.predictor import Predictor
    from covidviz.model.preprocessing import model_batch
    from covidviz.model.provenance import HEAD_REFIT
    from covidviz.paths import cache_dir
    from covidviz.tools.quantise import forward
    from covidviz.training.augment import random_acquisition
    from covidviz.training.checkpoint import load_init
    from covidviz.training.prepared_store import prepared_from_store
    from covidviz.training.train import sample_weights

    weights, data = Path(args.weights), Path(args.data)
    predictor = Predictor(weights, engine="torch")
    train = records_for_splits(data, weights)["train"]
    n_readings = 1 + args.acquisition_views
    kept = Path(args.features).expanduser() if args.features else None
    key = f"{predictor.sidecar['weights_sha256'][:12]}-{len(train)}x{n_readings}"
    stored = np.load(kept) if kept is not None and kept.is_file() else None
    if stored is not None and str(stored["key"]) == key:
        features = stored["features"]
        print(f"read the pooled features from {kept}", flush=True)
    else:
        store = cache_dir() / "prepared" / f"prepared-{predictor.segmenter.sha256[:12]}.npz"
        fields = prepared_from_store(store, data, train, predictor.segmenter).astype(np.float32) / 255
        generator = torch.Generator().manual_seed(0)
        readings = [fields] + [random_acquisition(fields, generator, 1.0) for _ in range(args.acquisition_views)]
        features = np.concatenate([forward(predictor.engine, model_batch(r[start:start + CHUNK],
                                                                         predictor.input_size)).pooled
                                   for r in readings for start in range(0, len(r), CHUNK)])  # no set's full maps
        if kept is not None:
            kept.parent.mkdir(parents=True, exist_ok=True)
            np.savez(kept, features=features, key=key)
    labels = np.tile([r.target for r in train], n_readings)
    groups = np.tile([r.group for r in train], n_readings)  # a film's readings stay in one fold
    weights_per_film = (None if args.adult_pneumonia is None else
                        np.tile(sample_weights(train, adult_pneumonia=args.adult_pneumonia) * len(train), n_readings))
    fit_params = {} if weights_per_film is None else {"logisticregression__sample_weight": weights_per_film}
    print(f"features of {len(train)} training films, {n_readings} readings each ({features.shape[1]} each)",
          flush=True)

    def model(c: float):
        balance = "balanced" if weights_per_film is None else None  # the sample weights balance classes themselves
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight=balance, max_iter=3000))

    scores = {c: float(np.mean(cross_val_score(model(c), features, labels, groups=groups, cv=GroupKFold(5),
                                               scoring="f1_macro", params=fit_params))) for c in args.c}
    for c, score in scores.items():
        print(f"C {c:g}: macro F1 {score:.3f} over 5 folds of the training films (grouped by patient)", flush=True)
    best = max(scores, key=scores.get)
    fitted = model(best).fit(features, labels, **fit_params)
    scaler, regression = fitted[0], fitted[1]
    weight, bias = folded_head(scaler.mean_, scaler.scale_, regression.coef_, regression.intercept_)

    state, stages = load_init(weights)
    state = dict(state)
    state["classifier.weight"] = torch.tensor(weight, dtype=state["classifier.weight"].dtype)
    state["classifier.bias"] = torch.tensor(bias, dtype=state["classifier.bias"].dtype)
    stage = {"stage": HEAD_REFIT, "from": str(weights), "sha256": predictor.sidecar["weights_sha256"][:12],
             "films": len(train), "acquisition_views": args.acquisition_views, "C": best, "cv_macro_f1": {str(c): round(s, 4) for c, s in scores.items()},
             "class_weight": "balanced" if weights_per_film is None else
             f"as training samples: classes equal, sources by size^0.5, adults {args.adult_pneumonia:.0%} of pneumonia",
             **({} if args.adult_pneumonia is None else {"adult_pneumonia": args.adult_pneumonia})}
    out = Path(args.out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    torch.save({"model": state, "stages": [*stages, stage], "epoch": None, "val": None}, tmp)
    os.replace(tmp, out)
    print(f"wrote {out} (C {best:g}); read it as {out}:{predictor.sidecar['architecture']}:{predictor.input_size}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

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
``--outside-lungs WEIGHT ...`` then refines the fitted head, from where it stands, on its own loss plus WEIGHT
times the training penalty on Grad-CAM outside the lungs (:mod:`covidviz.training.lung_attention`), read on the
clean maps of ``--map-films`` training films: the refit moved the maps out of the lungs (v3's median lung energy
0.76, v4's 0.72), and with the features frozen each class's map is linear in the head. Each weight is tried, and
on validation the one whose shown maps lie most inside the lungs is kept among those that give up at most
``F1_GIVE`` of the plain refit's macro F1 (0 when none do).
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
from typing import TYPE_CHECKING

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the package beside it, not an installed one

if TYPE_CHECKING:
    from covidviz.model.predictor import Predictor

C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
F1_GIVE = 0.01  # validation macro F1 a map-refined head may give up for maps inside the lungs
CHUNK = 256  # films per forward pass: the 16 x 16 x 1024 maps of all 6,271 would take 6.6 GB


def folded_head(scaler_mean: np.ndarray, scaler_scale: np.ndarray, coef: np.ndarray, intercept: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """The weight and bias of one linear layer equal to standardising, then the fitted logistic regression:
    W (x - m) / s + b = (W / s) x + (b - W m / s)."""
    weight = coef / scaler_scale
    return weight, intercept - weight @ scaler_mean


def refine_head(weight: np.ndarray, bias: np.ndarray, pooled: np.ndarray, labels: np.ndarray,
                film_weights: np.ndarray, scale: np.ndarray, c: float, feature_maps: np.ndarray, lungs: np.ndarray,
                outside_weight: float, steps: int = 150, chunk: int = 500
                ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """The head (weight K x C, bias K) that minimises the regularised logistic loss of the fitted one plus
    ``outside_weight`` times the share of the Grad-CAM maps outside the lungs, from the fitted head.

    The loss is scikit-learn's for the standardised features divided by C times the number of readings: the
    weighted mean cross-entropy plus |W s|^2 / (2 C N), so at weight 0 the fitted head is its minimum. The maps are
    those of the clean readings' N x C x h x w float32 ``feature_maps`` against their N x h x w ``lungs``
    (the share of each cell inside the lung mask), weighed as the training penalty weighs them."""
    import torch
    import torch.nn.functional as F

    from covidviz.training.lung_attention import gradcam_energy, outside_lung_share

    w = torch.tensor(weight, dtype=torch.float32, requires_grad=True)
    b = torch.tensor(bias, dtype=torch.float32, requires_grad=True)
    x, y = torch.from_numpy(pooled.astype("float32")), torch.from_numpy(labels).long()
    sw = torch.from_numpy(film_weights.astype("float32"))
    s = torch.from_numpy(scale.astype("float32"))
    inside = torch.from_numpy(lungs.astype("float32"))
    has_lungs = inside.flatten(1).amax(1) > 0
    n_maps = int(has_lungs.sum())
    optimiser = torch.optim.LBFGS([w, b], lr=1, max_iter=steps, history_size=20, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-7, tolerance_change=1e-10)
    trace: dict[str, float] = {}

    def closure():
        optimiser.zero_grad()
        ce = (F.cross_entropy(x @ w.T + b, y, reduction="none") * sw).sum() / sw.sum()
        loss = ce + ((w * s) ** 2).sum() / (2 * c * len(x))
        loss.backward()
        outside_total = 0.0
        if outside_weight > 0:
            for start in range(0, len(feature_maps), chunk):
                energy = gradcam_energy(torch.from_numpy(feature_maps[start:start + chunk]), w)
                films = int(has_lungs[start:start + chunk].sum())  # the share is their mean: weigh the chunk by them
                part = outside_lung_share(energy, inside[start:start + chunk, None]) * films / n_maps
                (outside_weight * part).backward()
                outside_total += float(part.detach())
        w.grad = w.grad.contiguous()  # L-BFGS flattens the gradient, which the matrix product leaves transposed
        trace.update(ce=float(ce.detach()), outside=outside_total)
        return loss + outside_weight * outside_total

    optimiser.step(closure)
    return w.detach().numpy(), b.detach().numpy(), trace


def lungs_on_grid(lungs_packed: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """N x h x w: the share of each map cell inside the film's packed lung mask (as the penalty reads it)."""
    import torch
    import torch.nn.functional as F

    masks = np.unpackbits(lungs_packed, axis=-1, count=lungs_packed.shape[1]).astype(np.float32)
    return F.adaptive_avg_pool2d(torch.from_numpy(masks)[:, None], shape)[:, 0].numpy()


def shown_lung_share(weight: np.ndarray, feature_maps: np.ndarray, predicted: np.ndarray, lungs: np.ndarray
                     ) -> np.ndarray:
    """Each film's share of its predicted class's Grad-CAM (ReLU applied) inside the lungs, on the map's own cells
    (the evaluation reads the map resized onto the 256 px mask: close to this, not equal)."""
    from covidviz.explain.cam.fast_gradcam import gradcam_weights

    alpha = gradcam_weights(weight, feature_maps)[np.arange(len(predicted)), predicted]  # N x C
    maps = np.maximum(np.einsum("nc,nchw->nhw", alpha, feature_maps, optimize=True), 0)
    total = maps.sum((1, 2))
    return np.where(total > 0, (maps * lungs).sum((1, 2)) / np.maximum(total, 1e-12), np.nan)


def map_readings(predictor: Predictor, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pooled features and the float32 feature maps of uint8 prepared fields, read clean."""
    from covidviz.model.preprocessing import model_batch
    from covidviz.tools.quantise import forward

    passes = [forward(predictor.engine, model_batch(images[start:start + CHUNK].astype(np.float32) / 255,
                                                     predictor.input_size))
              for start in range(0, len(images), CHUNK)]
    return (np.concatenate([f.pooled for f in passes]),
            np.concatenate([f.feature_map.astype(np.float32) for f in passes]))


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
    parser.add_argument("--outside-lungs", type=float, nargs="+", metavar="WEIGHT",
                        help="refine the fitted head with the penalty on Grad-CAM outside the lungs, at each weight; "
                             "the weight is chosen on validation (see the module docstring)")
    parser.add_argument("--map-films", type=int, default=3000,
                        help="training films whose maps the penalty reads (default 3000; their maps take 1 MB each)")
    args = parser.parse_args(argv)

    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from covidviz import CLASSES
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

    refinement = {}
    if args.outside_lungs:
        from covidviz.evaluation.measures.metrics import macro_f1
        from covidviz.training.config import TrainConfig
        from covidviz.training.prepare import prepared_fields

        run = Path(args.out).expanduser().parent
        run.mkdir(parents=True, exist_ok=True)
        cfg = TrainConfig(data_dir=str(data), run_dir=str(run))
        val = records_for_splits(data, weights)["val"]
        train_fields = prepared_fields(cfg, run, "train", train, predictor.segmenter)
        val_fields = prepared_fields(cfg, run, "val", val, predictor.segmenter)
        pick = np.sort(np.random.default_rng(0).permutation(len(train))[:args.map_films])
        _, train_maps = map_readings(predictor, train_fields.images[pick])
        val_pooled, val_maps = map_readings(predictor, val_fields.images)
        grid = train_maps.shape[2:]
        train_lungs = lungs_on_grid(train_fields.lungs_packed[pick], grid)
        val_lungs = lungs_on_grid(val_fields.lungs_packed, grid)
        val_y = np.array([r.target for r in val])
        film_weights = (weights_per_film if weights_per_film is not None else
                        len(labels) / (len(CLASSES) * np.bincount(labels, minlength=len(CLASSES)))[labels])
        rows = []
        for outside_weight in [0.0, *args.outside_lungs]:
            w, b, trace = refine_head(weight, bias, features, labels, film_weights, scaler.scale_, best, train_maps,
                                      train_lungs, outside_weight)
            predicted = (val_pooled @ w.T + b).argmax(1)
            share = shown_lung_share(w, val_maps, predicted, val_lungs)
            rows.append({"outside_weight": outside_weight, "weight": w, "bias": b,
                         "val_macro_f1": macro_f1(val_y, predicted, len(CLASSES)),
                         "val_lung_share": float(np.nanmedian(share)), "train_outside": trace["outside"]})
            print(f"outside weight {outside_weight:g}: validation macro F1 {rows[-1]['val_macro_f1']:.3f}, median "
                  f"lung share of the shown map {rows[-1]['val_lung_share']:.3f}; training cross-entropy "
                  f"{trace['ce']:.4f}, maps outside the lungs {trace['outside']:.3f}", flush=True)
        floor = rows[0]["val_macro_f1"] - F1_GIVE
        chosen = max((r for r in rows if r["val_macro_f1"] >= floor), key=lambda r: r["val_lung_share"])
        weight, bias = chosen["weight"], chosen["bias"]
        refinement = {"outside_lungs": chosen["outside_weight"], "map_films": len(pick),
                      "validation": [{k: round(v, 4) for k, v in r.items() if k not in ("weight", "bias")}
                                     for r in rows]}
        print(f"chosen: outside weight {chosen['outside_weight']:g}", flush=True)

    state, stages = load_init(weights)
    state = dict(state)
    state["classifier.weight"] = torch.tensor(weight, dtype=state["classifier.weight"].dtype)
    state["classifier.bias"] = torch.tensor(bias, dtype=state["classifier.bias"].dtype)
    stage = {"stage": HEAD_REFIT, "from": str(weights), "sha256": predictor.sidecar["weights_sha256"][:12],
             "films": len(train), "acquisition_views": args.acquisition_views, "C": best, "cv_macro_f1": {str(c): round(s, 4) for c, s in scores.items()},
             "class_weight": "balanced" if weights_per_film is None else
             f"as training samples: classes equal, sources by size^0.5, adults {args.adult_pneumonia:.0%} of pneumonia",
             **({} if args.adult_pneumonia is None else {"adult_pneumonia": args.adult_pneumonia}), **refinement}
    out = Path(args.out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    torch.save({"model": state, "stages": [*stages, stage], "epoch": None, "val": None}, tmp)
    os.replace(tmp, out)
    print(f"wrote {out} (C {best:g}); read it as {out}:{predictor.sidecar['architecture']}:{predictor.input_size}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

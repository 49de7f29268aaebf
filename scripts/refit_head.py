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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class FittedHead:
    """The cross-validated logistic regression folded into one linear layer, and what chose it."""

    weight: np.ndarray
    bias: np.ndarray
    c: float
    scores: dict[float, float]  # C -> mean macro F1 over the 5 grouped folds
    scale: np.ndarray  # the standardisation's scale, which the refinement's loss reads the head through


def training_features(predictor: Predictor, data: Path, train: list, acquisition_views: int,
                      kept: Path | None) -> np.ndarray:
    """Pooled features of every training film read clean, then through ``acquisition_views`` seeded acquisition
    transforms each; kept in (and read back from) ``kept`` when the model and the readings match."""
    import torch

    from covidviz.model.preprocessing import model_batch
    from covidviz.paths import cache_dir
    from covidviz.tools.quantise import forward
    from covidviz.training.augment import random_acquisition
    from covidviz.training.prepared_store import prepared_from_store

    key = f"{predictor.sidecar['weights_sha256'][:12]}-{len(train)}x{1 + acquisition_views}"
    stored = np.load(kept) if kept is not None and kept.is_file() else None
    if stored is not None and str(stored["key"]) == key:
        print(f"read the pooled features from {kept}", flush=True)
        return stored["features"]
    store = cache_dir() / "prepared" / f"prepared-{predictor.segmenter.sha256[:12]}.npz"
    fields = prepared_from_store(store, data, train, predictor.segmenter).astype(np.float32) / 255
    generator = torch.Generator().manual_seed(0)
    readings = [fields] + [random_acquisition(fields, generator, 1.0) for _ in range(acquisition_views)]
    features = np.concatenate([forward(predictor.engine, model_batch(r[start:start + CHUNK], predictor.input_size)
                                       ).pooled
                               for r in readings for start in range(0, len(r), CHUNK)])  # no set's full maps
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        np.savez(kept, features=features, key=key)
    return features


def fit_head(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, film_weights: np.ndarray | None,
             c_grid: list[float]) -> FittedHead:
    """Multinomial logistic regression on standardised features, C chosen by macro F1 over 5 folds grouped by
    patient; balanced classes unless ``film_weights`` weigh the films (they balance classes themselves)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    fit_params = {} if film_weights is None else {"logisticregression__sample_weight": film_weights}

    def model(c: float):
        balance = "balanced" if film_weights is None else None
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight=balance, max_iter=3000))

    scores = {c: float(np.mean(cross_val_score(model(c), features, labels, groups=groups, cv=GroupKFold(5),
                                               scoring="f1_macro", params=fit_params))) for c in c_grid}
    for c, score in scores.items():
        print(f"C {c:g}: macro F1 {score:.3f} over 5 folds of the training films (grouped by patient)", flush=True)
    best = max(scores, key=scores.get)
    fitted = model(best).fit(features, labels, **fit_params)
    scaler, regression = fitted[0], fitted[1]
    weight, bias = folded_head(scaler.mean_, scaler.scale_, regression.coef_, regression.intercept_)
    return FittedHead(weight, bias, best, scores, scaler.scale_)


def refine_for_the_lungs(predictor: Predictor, data: Path, weights: Path, run: Path, train: list,
                         head: FittedHead, features: np.ndarray, labels: np.ndarray, film_weights: np.ndarray,
                         outside_weights: list[float], map_films: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """``--outside-lungs``: the head refined at weight 0 and at each of ``outside_weights``, and the one validation
    keeps (see the module docstring), with the stage entries that record the choice."""
    from covidviz import CLASSES
    from covidviz.evaluation.artifacts.evaluate import records_for_splits
    from covidviz.evaluation.measures.metrics import macro_f1
    from covidviz.training.config import TrainConfig
    from covidviz.training.prepare import prepared_fields

    run.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(data_dir=str(data), run_dir=str(run))
    val = records_for_splits(data, weights)["val"]
    train_fields = prepared_fields(cfg, run, "train", train, predictor.segmenter)
    val_fields = prepared_fields(cfg, run, "val", val, predictor.segmenter)
    pick = np.sort(np.random.default_rng(0).permutation(len(train))[:map_films])
    _, train_maps = map_readings(predictor, train_fields.images[pick])
    val_pooled, val_maps = map_readings(predictor, val_fields.images)
    grid = train_maps.shape[2:]
    train_lungs = lungs_on_grid(train_fields.lungs_packed[pick], grid)
    val_lungs = lungs_on_grid(val_fields.lungs_packed, grid)
    val_y = np.array([r.target for r in val])
    rows = []
    for outside_weight in [0.0, *outside_weights]:
        w, b, trace = refine_head(head.weight, head.bias, features, labels, film_weights, head.scale, head.c,
                                  train_maps, train_lungs, outside_weight)
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
    print(f"chosen: outside weight {chosen['outside_weight']:g}", flush=True)
    return chosen["weight"], chosen["bias"], {
        "outside_lungs": chosen["outside_weight"], "map_films": len(pick),
        "validation": [{k: round(v, 4) for k, v in r.items() if k not in ("weight", "bias")} for r in rows]}


def write_checkpoint(out: Path, weights: Path, weight: np.ndarray, bias: np.ndarray, stage: dict) -> None:
    """The shipped model's state with the new head, its stages followed by ``stage``, written atomically."""
    import torch

    from covidviz.training.checkpoint import load_init

    state, stages = load_init(weights)
    state = dict(state)
    state["classifier.weight"] = torch.tensor(weight, dtype=state["classifier.weight"].dtype)
    state["classifier.bias"] = torch.tensor(bias, dtype=state["classifier.bias"].dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    torch.save({"model": state, "stages": [*stages, stage], "epoch": None, "val": None}, tmp)
    os.replace(tmp, out)


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

    from covidviz import CLASSES
    from covidviz.evaluation.artifacts.evaluate import records_for_splits
    from covidviz.model.predictor import Predictor
    from covidviz.model.provenance import HEAD_REFIT
    from covidviz.training.train import sample_weights

    weights, data, out = Path(args.weights), Path(args.data), Path(args.out).expanduser()
    predictor = Predictor(weights, engine="torch")
    train = records_for_splits(data, weights)["train"]
    n_readings = 1 + args.acquisition_views
    features = training_features(predictor, data, train, args.acquisition_views,
                                 Path(args.features).expanduser() if args.features else None)
    labels = np.tile([r.target for r in train], n_readings)
    groups = np.tile([r.group for r in train], n_readings)  # a film's readings stay in one fold
    weights_per_film = (None if args.adult_pneumonia is None else
                        np.tile(sample_weights(train, adult_pneumonia=args.adult_pneumonia) * len(train), n_readings))
    print(f"features of {len(train)} training films, {n_readings} readings each ({features.shape[1]} each)",
          flush=True)
    head = fit_head(features, labels, groups, weights_per_film, args.c)
    weight, bias, refinement = head.weight, head.bias, {}
    if args.outside_lungs:
        film_weights = (weights_per_film if weights_per_film is not None else
                        len(labels) / (len(CLASSES) * np.bincount(labels, minlength=len(CLASSES)))[labels])
        weight, bias, refinement = refine_for_the_lungs(predictor, data, weights, out.parent, train, head, features,
                                                        labels, film_weights, args.outside_lungs, args.map_films)
    stage = {"stage": HEAD_REFIT, "from": str(weights), "sha256": predictor.sidecar["weights_sha256"][:12],
             "films": len(train), "acquisition_views": args.acquisition_views, "C": head.c,
             "cv_macro_f1": {str(c): round(s, 4) for c, s in head.scores.items()},
             "class_weight": "balanced" if weights_per_film is None else
             f"as training samples: classes equal, sources by size^0.5, adults {args.adult_pneumonia:.0%} of pneumonia",
             **({} if args.adult_pneumonia is None else {"adult_pneumonia": args.adult_pneumonia}), **refinement}
    write_checkpoint(out, weights, weight, bias, stage)
    print(f"wrote {out} (C {head.c:g}); read it as {out}:{predictor.sidecar['architecture']}:{predictor.input_size}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The shipped model behind one small API: uploads in, calibrated probabilities out.

Used by the CLI and the dashboard alike, so both show the same numbers. The dashboard's predictor is *lean*:
where its engines need no torch (ONNX Runtime, OpenVINO), it serves from the plan this machine made
(:mod:`covidviz.model.serving_plan`) and loads PyTorch only if a library heatmap method asks for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from covidviz import CLASSES
from covidviz.errors import WeightsError, XrayInputError
from covidviz.io.isolation import read_untrusted
from covidviz.io.xray import Xray
from covidviz.model.decision import ARGMAX_RULE, DecisionRule, abstention_reason, rule_from_sidecar
from covidviz.model.engine import build_engine
from covidviz.model.forward_pass import ForwardPass
from covidviz.model.inference import softmax
from covidviz.model.ood import colour_message, load_guard, lung_message, ood_message
from covidviz.model.preprocessing import Prepared, model_batch, prepare
from covidviz.model.segmenter_engine import serve_segmenter
from covidviz.model.serving_plan import LeanEngines, lean_engines, record_plan
from covidviz.model.site_profile import calibrated_sidecar, calibration_for
from covidviz.model.weights import classifier_weight, load_weights, verified_sidecar
from covidviz.paths import WEIGHTS_DIR

if TYPE_CHECKING:
    from covidviz.lungs.field import LungCheck
    from covidviz.lungs.segmenter import LungSegmenter
    from covidviz.model.network import GapClassifier


@dataclass(frozen=True)
class Prediction:
    """One image's outcome: probabilities (calibrated) or the reason it was rejected; its class by the model's
    decision rule, or none with the reason (``abstained``) where the input is not one the model can read."""

    name: str
    probabilities: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    info: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    ood_distance: float | None = None  # None: the model has no out-of-distribution guard
    lungs_plausible: bool | None = None  # None: the model does not read lung fields
    abstained: str | None = None  # why no class is given (OOD, no plausible lungs); None: a class is given
    rule: DecisionRule = ARGMAX_RULE  # the model's decision rule (covidviz.model.decision)

    @property
    def label(self) -> str | None:
        if not self.probabilities or self.abstained is not None:
            return None
        return self.rule.label(self.probabilities)

    def as_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"file": self.name, "error": self.error}
        return {"file": self.name, "label": self.label, "abstained": self.abstained,
                "probabilities": {c: round(p, 6) for c, p in self.probabilities.items()},
                "warnings": list(self.warnings),
                **({} if self.ood_distance is None else {"ood_distance": round(self.ood_distance, 3)}),
                **({} if self.lungs_plausible is None else {"lungs_plausible": self.lungs_plausible})}


class Predictor:
    """Loads and verifies the weights once; thread-safe for inference (no hooks, no state).

    ``engine`` runs the forward passes (see :mod:`covidviz.model.engine`; default ``COVIDVIZ_ENGINE``, else
    ``auto``): ``auto`` measures the exact engines here and keeps the fastest; ``fast`` is bf16 autocast, only
    where the CPU runs bf16 natively. ``lean`` (the dashboard's) serves from this machine's remembered plan without loading torch
    where the plan's engines need none; :attr:`model`, the PyTorch network that training, evaluation and the
    library heatmap methods use, is then loaded on first use."""

    def __init__(self, weights_dir: str | Path = WEIGHTS_DIR, fast: bool = False,
                 engine: str | None = None, stage: Callable[[str], None] | None = None, lean: bool = False) -> None:
        """``stage`` (optional) is called with a name after each part is loaded: how
        ``scripts/memory_breakdown.py`` says what each part costs, on the path the dashboard takes."""
        stage = stage or (lambda _name: None)
        self.weights_dir = Path(weights_dir)
        self._model: GapClassifier | None = None
        self._model_lock = threading.Lock()
        if lean and not fast:
            self.sidecar = verified_sidecar(self.weights_dir)  # the network waits for its first use
        else:  # verified once, as the network is built
            model, self.sidecar = load_weights(self.weights_dir)
            self._model = _serving_form(model)
        self.segmenter = field_segmenter(self.weights_dir, self.sidecar, network=not lean or fast)
        self.guard = load_guard(self.weights_dir)  # None for a model evaluate has not seen yet
        stage("weights verified" + (", both networks built in PyTorch" if self._model is not None else "")
              + ", out-of-distribution guard")
        self.input_size = int(self.sidecar["input_size"])
        # a site profile fitted for these weights overrides the shipped temperature; the sidecar copy carries
        # its label so that every audit record names the calibration in use
        self.calibration = calibration_for(self.sidecar)
        self.temperature = self.calibration.temperature
        self.sidecar = calibrated_sidecar(self.sidecar, self.calibration)
        self.fast = fast
        self.decision = rule_from_sidecar(self.sidecar)
        self.segmenter_note = "no lung segmenter (the model reads whole images)"
        served = None if fast or not lean else lean_engines(self.weights_dir, self.sidecar, engine,
                                                            self.segmenter is not None)
        if served is not None:
            self._serve_from_plan(served)
            stage("classifier and lung segmenter engines, from this machine's serving plan")
        else:
            self._serve_in_process(engine, fast, stage)

    def _serve_from_plan(self, served: LeanEngines) -> None:
        """The engines the plan names, from their verified exports: no torch."""
        self.engine, self.engine_note = served.engine, served.engine_note
        self._classifier_weight = classifier_weight(self.weights_dir, self.sidecar)
        if self.segmenter is not None:
            self.segmenter = self.segmenter.served_by("onnxruntime", served.segmenter_run)
            self.segmenter_note = served.segmenter_note

    def _serve_in_process(self, engine: str | None, fast: bool, stage: Callable[[str], None]) -> None:
        """The engines chosen here, with PyTorch (each export checked against it, ``auto`` timing them), and
        the choice remembered as this machine's serving plan."""
        model = self.model
        self._classifier_weight = model.classifier.weight.detach().numpy()
        self.engine, self.engine_note = build_engine(engine, model, self.sidecar, bf16=fast,
                                                   weights_dir=self.weights_dir)
        stage(f"classifier engine: {self.engine_note}")
        if self.segmenter is not None:
            self.segmenter, self.segmenter_note = serve_segmenter(self.segmenter, "torch" if fast else engine)
            stage(self.segmenter_note)
        if not fast:
            record_plan(self.sidecar, engine, model, self.engine, self.engine_note, self.segmenter,
                        self.segmenter_note, self.weights_dir)

    @property
    def model(self) -> GapClassifier:
        """The verified PyTorch network (fp32, eval, channels-last), loaded on first use by a lean predictor."""
        with self._model_lock:
            if self._model is None:
                self._model = _serving_form(load_weights(self.weights_dir)[0])
            return self._model

    @property
    def version(self) -> str:
        return self.sidecar["weights_sha256"][:12]

    @property
    def classifier_weight(self) -> np.ndarray:
        """K x C: what the one-pass Grad-CAM weighs the feature map with."""
        return self._classifier_weight

    def verdict(self, probabilities: np.ndarray, ood_distance: float | None, lung_check: LungCheck | None,
                colourful: bool) -> tuple[str | None, str | None]:
        """(class, None) by this model's decision rule, or (None, reason) where it gives no class: one answer
        for every interface that holds the pieces of a reading rather than a :class:`Prediction`.
        ``colourful``: the upload was a colour picture (:attr:`~covidviz.io.xray.Xray.colourful`)."""
        reason = abstention_reason(ood_distance, None if self.guard is None else self.guard.threshold,
                                   None if lung_check is None else bool(lung_check.plausible), colourful)
        return (None, reason) if reason else (self.decision.label(np.asarray(probabilities, float)), None)

    def prepare(self, grays: list[np.ndarray]) -> list[Prepared]:
        """What this model reads: lung fields when it was trained on them, else whole images."""
        return prepare(grays, self.segmenter)

    def forward(self, canonical: list[np.ndarray] | np.ndarray, batch_size: int = 32) -> ForwardPass:
        """Logits and last feature maps for canonical images, on this predictor's engine, in batches."""
        passes = [self.engine.run(model_batch(canonical[start:start + batch_size], self.input_size))
                  for start in range(0, len(canonical), batch_size)]
        return ForwardPass(logits=np.concatenate([p.logits for p in passes]),
                           feature_map=np.concatenate([p.feature_map for p in passes]))

    def forward_for_maps(self, canonical: list[np.ndarray] | np.ndarray) -> ForwardPass:
        """:meth:`forward` for a heatmap: an approximate engine (INT8) gives the logits, and its exact twin the
        feature map that Grad-CAM and the page's OOD check read, so a map is never drawn from approximate
        features. On an exact engine this is :meth:`forward`."""
        served = self.forward(canonical)
        exact = getattr(self.engine, "exact", None)
        if exact is None:
            return served
        batch = model_batch(canonical, self.input_size)
        return ForwardPass(logits=served.logits, feature_map=exact.run(batch).feature_map)

    def probabilities(self, canonical: list[np.ndarray] | np.ndarray, batch_size: int = 32) -> np.ndarray:
        """N x 3 calibrated probabilities for canonical images."""
        return softmax(self.forward(canonical, batch_size).logits, self.temperature)

    def predict_xrays(self, xrays: list[Xray], names: list[str]) -> list[Prediction]:
        """Calibrated probabilities, with the loader's warnings and the out-of-distribution note if any."""
        if not xrays:
            return []
        prepared = self.prepare([x.pixels for x in xrays])
        result = self.forward([p.image for p in prepared])
        probs = softmax(result.logits, self.temperature)
        distances = self.guard.distance(result.pooled) if self.guard is not None else [None] * len(xrays)
        out = []
        for name, xray, row, distance, one in zip(names, xrays, probs, distances, prepared):
            notes = tuple(n for n in (colour_message(xray.colourful), lung_message(one.check),
                                      ood_message(distance, self.guard)) if n)
            distance = None if distance is None else float(distance)
            out.append(Prediction(name=name, probabilities={c: float(p) for c, p in zip(CLASSES, row)},
                                  warnings=notes + xray.warnings, info=xray.info, ood_distance=distance,
                                  lungs_plausible=None if one.check is None else bool(one.check.plausible),
                                  abstained=self.verdict(row, distance, one.check, xray.colourful)[1], rule=self.decision))
        return out

    def predict_bytes(self, data: bytes, name: str) -> Prediction:
        try:
            xray = read_untrusted(data, name)
        except XrayInputError as exc:
            return Prediction(name=name, error=str(exc))
        return self.predict_xrays([xray], [name])[0]


def _serving_form(model: GapClassifier) -> GapClassifier:
    import torch
    return model.to(memory_format=torch.channels_last)


def field_segmenter(weights_dir: str | Path, sidecar: dict[str, Any], network: bool = True) -> LungSegmenter | None:
    """The lung segmenter a model was trained with (its sha256 is in the model's sidecar), or None for a
    model trained on whole images. A different segmenter would feed the model crops it never saw.
    ``network=False``: verified, with its PyTorch network left to first use.

    Looked for in ``<weights_dir>/lungs``, else in the folders above it: a comparison model under
    ``weights/comparison/<name>`` shares the shipped segmenter instead of carrying a copy."""
    wanted = sidecar.get("preprocessing", {}).get("lung_segmenter_sha256")
    if not wanted:
        return None
    from covidviz.lungs.segmenter import LUNGS_SUBDIR, load_segmenter
    weights_dir = Path(weights_dir)
    base = next((d for d in (weights_dir, *list(weights_dir.resolve().parents)[:2]) if (d / LUNGS_SUBDIR).is_dir()),
                weights_dir)
    segmenter = load_segmenter(base, network)
    if segmenter.sha256 != wanted:
        raise WeightsError(f"the model was trained on lung fields from segmenter {wanted[:12]}, but "
                           f"{base / LUNGS_SUBDIR} holds {segmenter.sha256[:12]}")
    return segmenter

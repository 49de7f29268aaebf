"""Audit events as plain values, built from what the interfaces already hold (pure: no database here)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from covidviz import CLASSES, __version__
from covidviz.audit.identity import Actor, current_actor
from covidviz.audit.vocabulary import INTERFACES, KINDS, OOD_LEVELS
from covidviz.lungs.field import LungCheck
from covidviz.model.ood import OodGuard, lung_message, ood_message
from covidviz.model.site_profile import CALIBRATION_KEY

_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class AuditEvent:
    """One row of the audit log. Holds no image, no file name, no DICOM attribute. ``actor`` is the staff
    member behind it (by default whoever :func:`~covidviz.audit.identity.current_actor` names when the event
    is made); ``resource`` the page or action an access event is about."""

    kind: str
    interface: str
    input_sha256: str | None
    model_name: str | None = None
    model_sha256: str | None = None
    probabilities: dict[str, float] | None = None
    predicted_class: str | None = None  # by the model's decision rule; None with ``abstained``
    abstained: str | None = None  # why no class was given (out of distribution, no plausible lungs)
    ood: str | None = None
    ood_distance: float | None = None
    lung_field_plausible: bool | None = None
    warnings: tuple[str, ...] = ()
    heatmap_method: str | None = None
    heatmap_class: str | None = None
    lung_energy: float | None = None
    error: str | None = None
    calibration: str | None = None  # the calibration in use: "shipped" or the site profile's version and hash
    temperature: float | None = None  # the temperature that produced ``probabilities`` (recalibration needs it)
    resource: str | None = None
    app_version: str = __version__
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    actor: Actor = field(default_factory=current_actor)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"audit kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.interface not in INTERFACES:
            raise ValueError(f"audit interface {self.interface!r} is not one of {', '.join(INTERFACES)}")
        if self.ood is not None and self.ood not in OOD_LEVELS:
            raise ValueError(f"OOD level {self.ood!r} is not one of {', '.join(OOD_LEVELS)}")

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["warnings"] = list(self.warnings)
        del row["actor"]
        row.update(user_sub=self.actor.sub, user_issuer=self.actor.issuer, os_user=self.actor.os_user,
                   host=self.actor.host)
        return row


def content_sha256(content: bytes | Path) -> str | None:
    """sha256 of the input's bytes (a file is read in chunks); None when a file cannot be read."""
    if isinstance(content, (bytes, bytearray, memoryview)):
        return hashlib.sha256(content).hexdigest()
    digest = hashlib.sha256()
    try:
        with Path(content).open("rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _prefix(message: str | None, stop: str) -> str:
    return (message or "").split(stop)[0]


# The opening words of the model's own notes (covidviz.model.ood), derived from its functions so a reworded
# note cannot silently stop being recognised.
_PROBE = OodGuard(mean=np.zeros(1), precision=np.eye(1), threshold=2.0, caution=1.0)
OUTLIER_NOTE = _prefix(ood_message(3.0, _PROBE), "(")
UNUSUAL_NOTE = _prefix(ood_message(1.5, _PROBE), "(")
NO_LUNGS_NOTE = _prefix(lung_message(LungCheck(plausible=False, lung_share=0.0, reason="x")), ":")


def flags_from_warnings(warnings: Sequence[str], guard_present: bool) -> tuple[str | None, bool | None]:
    """(OOD level, lung field plausible) read back from a prediction's warnings, for interfaces that only
    hold a :class:`~covidviz.model.predictor.Prediction`. The lung flag is None when no note says the lungs
    were implausible (models without a segmenter never say so)."""
    if any(w.startswith(OUTLIER_NOTE) for w in warnings):
        ood = "outlier"
    elif any(w.startswith(UNUSUAL_NOTE) for w in warnings):
        ood = "unusual"
    else:
        ood = "typical" if guard_present else None
    no_lungs = any(w.startswith(NO_LUNGS_NOTE) for w in warnings)
    return ood, (False if no_lungs else None)


def model_identity(sidecar: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """(name, weights sha256) from a model's sidecar (``Predictor.sidecar``)."""
    if not sidecar:
        return None, None
    return sidecar.get("name"), sidecar.get("weights_sha256")


def calibration_fields(sidecar: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``calibration`` and ``temperature`` of an event, from a predictor's sidecar copy (which names the
    calibration in use: covidviz.model.site_profile); both None for a bare sidecar."""
    in_use = (sidecar or {}).get(CALIBRATION_KEY) or {}
    return {"calibration": in_use.get("label"), "temperature": in_use.get("temperature")}


def event_from_result(interface: str, input_sha256: str | None, result: Mapping[str, Any],
                      sidecar: Mapping[str, Any] | None, guard_present: bool) -> AuditEvent:
    """The event for one ``predict --json`` result (``Prediction.as_json()``): a prediction, or a rejection
    when it carries an error. The result's ``file`` is deliberately not kept."""
    name, sha = model_identity(sidecar)
    if result.get("error") is not None:
        return AuditEvent(kind="rejection", interface=interface, input_sha256=input_sha256, model_name=name,
                          model_sha256=sha, error=str(result["error"]))
    warnings = tuple(result.get("warnings") or ())
    ood, lungs = flags_from_warnings(warnings, guard_present)
    if result.get("lungs_plausible") is not None:  # predictions that carry the check say it either way
        lungs = bool(result["lungs_plausible"])
    distance = result.get("ood_distance")
    probabilities = {c: float(p) for c, p in result["probabilities"].items()}
    # a result without "label" (an older line) is read by argmax; one with "label": null gave no class
    label = result["label"] if "label" in result else max(probabilities, key=probabilities.get)
    return AuditEvent(kind="prediction", interface=interface, input_sha256=input_sha256, model_name=name,
                      model_sha256=sha, probabilities=probabilities, predicted_class=label,
                      abstained=result.get("abstained"),
                      ood=ood, ood_distance=None if distance is None else float(distance),
                      lung_field_plausible=lungs, warnings=warnings, **calibration_fields(sidecar))


def probabilities_dict(probabilities: Sequence[float] | np.ndarray | Mapping[str, float]) -> dict[str, float]:
    """Class name -> probability, from the model's row (in CLASSES order) or a mapping."""
    if isinstance(probabilities, Mapping):
        return {str(c): float(p) for c, p in probabilities.items()}
    return {c: float(p) for c, p in zip(CLASSES, probabilities)}

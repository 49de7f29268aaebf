"""Scoring PACS studies: retrieve each frontal chest radiograph, read it as the Diagnose page does, and
optionally store its Secondary Capture and Structured Report back in the same study.

What comes back is a compact summary per image (probabilities, flags, notes): never the pixels, never a
patient attribute, so a worklist of many studies stays small and safe to show and log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from dicomweb_client.api import DICOMwebClient

from covidviz import CLASSES
from covidviz.audit.recorder import record_prediction, record_rejection
from covidviz.errors import XrayInputError
from covidviz.explain.reading import Reading, read_xray
from covidviz.interop.dicom_results import DicomResultError, DicomResults, HeatmapChoice, dicom_results, source_header
from covidviz.interop.pacs import ImageRef, StudySummary, frontal_chest_images, retrieve, store
from covidviz.interop.pacs_session import PacsError, PacsSettings
from covidviz.io.isolation import read_untrusted
from covidviz.model.predictor import Predictor

log = logging.getLogger(__name__)
INTERFACE = "pacs"  # the audit log's name for this way in

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ImageScore:
    """One image's outcome: the model's reading in brief, or why it could not be read."""

    ref: ImageRef
    probabilities: dict[str, float] = field(default_factory=dict)
    is_outlier: bool = False
    is_unusual: bool = False
    notes: tuple[str, ...] = ()
    error: str | None = None
    stored: int = 0  # result objects stored in the PACS for this image
    label: str | None = None  # by the model's decision rule; None when unread or no class given
    abstained: str | None = None  # why no class was given (out of distribution, no plausible lungs)

    @property
    def flags(self) -> str:
        found = (["out of distribution"] if self.is_outlier else ["unlike the training images"]
                 if self.is_unusual else []) + list(self.notes)
        return " | ".join(found)

    @classmethod
    def of(cls, ref: ImageRef, reading: Reading, predictor: Predictor, stored: int = 0) -> ImageScore:
        notes = tuple(n for n in (reading.ood_note,) if n) + reading.xray.warnings
        label, abstained = reading.verdict(predictor)
        return cls(ref=ref, probabilities={c: float(p) for c, p in zip(CLASSES, reading.probabilities)},
                   is_outlier=reading.is_outlier, is_unusual=reading.is_unusual, notes=notes, stored=stored,
                   label=label, abstained=abstained)


@dataclass(frozen=True)
class StudyScore:
    study: StudySummary
    images: tuple[ImageScore, ...] = ()
    note: str | None = None  # no frontal chest image, or the study could not be listed

    def rows(self) -> list[dict[str, Any]]:
        """Table rows (one per image; one for a study with none): study facts, then the image's outcome."""
        base = {"date": self.study.shown_date, "accession": self.study.accession,
                "modalities": ", ".join(self.study.modalities), "description": self.study.description}
        if not self.images:
            return [{**base, "image": "", "label": None, "abstained": None, **{f"p_{c}": None for c in CLASSES}, "flags": "",
                     "note": self.note or "", "stored": 0, "study_uid": self.study.study_uid}]
        return [{**base, "image": image.ref.description, "label": image.label, "abstained": image.abstained,
                 **{f"p_{c}": image.probabilities.get(c) for c in CLASSES}, "flags": image.flags,
                 "note": image.error or "", "stored": image.stored, "study_uid": self.study.study_uid}
                for image in self.images]


def read_image(predictor: Predictor, data: bytes, ref: ImageRef) -> Reading:
    """The reading of retrieved bytes, decoded as an upload is (in an isolated worker; limits and warnings included)."""
    return read_xray(predictor, read_untrusted(data, ref.name), ref.name, predictor.guard)


def results_for(predictor: Predictor, data: bytes, ref: ImageRef, reading: Reading,
                choice: HeatmapChoice = HeatmapChoice()) -> DicomResults:
    return dicom_results(source_header(data, ref.name), reading, predictor, choice)


def _audit(predictor: Predictor, data: bytes, reading: Reading) -> None:
    """The audit record of one PACS reading: content hash, model, outcome; never the image or the patient."""
    ood = None
    if reading.guard is not None:
        ood = "outlier" if reading.is_outlier else "unusual" if reading.is_unusual else "typical"
    check = reading.lung_check
    record_prediction(INTERFACE, data, reading.probabilities, sidecar=predictor.sidecar,
                      warnings=tuple(n for n in (reading.ood_note,) if n) + reading.xray.warnings, ood=ood,
                      ood_distance=reading.ood_distance,
                      lung_field_plausible=None if check is None else bool(check.plausible),
                      verdict=reading.verdict(predictor))


def score_study(client: DICOMwebClient, settings: PacsSettings, predictor: Predictor, study: StudySummary,
                store_results: bool = False, progress: Progress | None = None) -> StudyScore:
    """Read every frontal chest radiograph of ``study``; with ``store_results`` send each one's SC and SR back.

    Problems with one image (undecodable, too large, refused by the server on store) are reported on that
    image and the others still go; an unreachable server raises :class:`PacsError`."""
    images = frontal_chest_images(client, settings, study)
    if not images.frontal:
        return StudyScore(study=study, note=images.note)
    scores = []
    for ref in images.frontal:
        if progress is not None:
            progress(f"{study.label}: {ref.description}")
        scores.append(score_image(client, settings, predictor, ref, store_results))
    log.info("scored %d images of one study (%d failed)", len(scores), sum(s.error is not None for s in scores))
    return StudyScore(study=study, images=tuple(scores))


def score_image(client: DICOMwebClient, settings: PacsSettings, predictor: Predictor, ref: ImageRef,
                store_results: bool = False) -> ImageScore:
    """Retrieve, read and (with ``store_results``) store the results of one image; recorded in the audit log."""
    data = retrieve(client, settings, ref)
    try:
        reading = read_image(predictor, data, ref)
    except XrayInputError as exc:
        record_rejection(INTERFACE, data, str(exc), sidecar=predictor.sidecar)
        return ImageScore(ref=ref, error=str(exc))
    _audit(predictor, data, reading)
    stored = 0
    if store_results:
        try:
            results = results_for(predictor, data, ref, reading)
            stored = store(client, settings, [results.sc, results.sr])
        except (DicomResultError, PacsError) as exc:
            return replace(ImageScore.of(ref, reading, predictor), error=f"results not stored: {exc}")
    return ImageScore.of(ref, reading, predictor, stored)

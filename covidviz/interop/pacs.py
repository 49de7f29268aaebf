"""Queries, retrieval and storage against a PACS over DICOMweb: search studies (QIDO-RS), find and retrieve
their frontal chest radiographs (WADO-RS), store results back (STOW-RS). The session (settings, sign-in,
errors) is :mod:`covidviz.interop.pacs_session`.

Logging: counts and steps only. No patient attribute is ever logged; the DICOM JSON a server returns is
reduced to the study and image facts below and dropped.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset, FileDataset

from covidviz.interop.dicom_json import as_int, dicom_json_objects, json_value, json_values
from covidviz.interop.pacs_session import PacsError, PacsSettings, talking_to
from covidviz.interop.part10 import part10
from covidviz.io.dicom import LATERAL_VIEWS, RADIOGRAPH_MODALITIES
from covidviz.io.loading import MAX_BYTES, MAX_UPLOAD_MB
from covidviz.io.xray import MAX_PIXELS

log = logging.getLogger(__name__)

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
CHEST_BODY_PARTS = ("CHEST", "THORAX")  # as the loader's body-part warning reads BodyPartExamined

STUDY_FIELDS = ("StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "StudyDescription",
                "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
SERIES_FIELDS = ("Modality", "SeriesNumber", "SeriesDescription", "BodyPartExamined")
INSTANCE_FIELDS = ("SOPClassUID", "InstanceNumber", "ViewPosition", "BodyPartExamined", "Rows", "Columns",
                   "NumberOfFrames")


@dataclass(frozen=True)
class StudySummary:
    """A study as the worklist shows it: no patient attribute on purpose."""

    study_uid: str
    date: str = ""  # YYYYMMDD as stored
    time: str = ""
    accession: str = ""
    modalities: tuple[str, ...] = ()
    description: str = ""
    n_series: int | None = None
    n_images: int | None = None

    @classmethod
    def from_json(cls, item: Mapping) -> StudySummary:
        return cls(study_uid=str(json_value(item, "StudyInstanceUID")), date=str(json_value(item, "StudyDate")),
                   time=str(json_value(item, "StudyTime")), accession=str(json_value(item, "AccessionNumber")),
                   modalities=json_values(item, "ModalitiesInStudy"), description=str(json_value(item, "StudyDescription")),
                   n_series=as_int(json_value(item, "NumberOfStudyRelatedSeries", None)),
                   n_images=as_int(json_value(item, "NumberOfStudyRelatedInstances", None)))

    @property
    def shown_date(self) -> str:
        d = self.date
        return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d

    @property
    def label(self) -> str:
        """How messages name the study: date and accession number (no patient attribute)."""
        return " ".join(p for p in (self.shown_date, f"accession {self.accession}" if self.accession else "") if p) \
            or "undated study"


_DAY = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")


def qido_date(text: str) -> str:
    """A QIDO-RS StudyDate value from what a user types: a day (2024-03-01 or 20240301) or a range
    (2024-03-01..2024-03-31; either end may be left open). Raises :class:`PacsError` otherwise."""
    text = text.strip()
    ends = text.split("..") if ".." in text else [text]
    if len(ends) > 2 or not any(e.strip() for e in ends):
        raise PacsError(f"Study date {text!r}: give a day (2024-03-01) or a range (2024-03-01..2024-03-31).")
    out = []
    for end in ends:
        end = end.strip()
        if not end:
            out.append("")
            continue
        found = _DAY.match(end)
        try:
            day = date(*(int(g) for g in found.groups())) if found else None
        except ValueError:
            day = None
        if day is None:
            raise PacsError(f"Study date {end!r} is not a calendar day: use YYYY-MM-DD or YYYYMMDD.")
        out.append(day.strftime("%Y%m%d"))
    return "-".join(out) if len(out) == 2 else out[0]


def study_filters(date_text: str | None = None, modality: str | None = None, accession: str | None = None
                  ) -> dict[str, str]:
    """Checked QIDO-RS filters (empty arguments are left out)."""
    filters = {}
    if date_text:
        filters["StudyDate"] = qido_date(date_text)
    if modality:
        modality = modality.strip().upper()
        if not re.fullmatch(r"[A-Z]{2,4}", modality):
            raise PacsError(f"Modality {modality!r} is not a DICOM modality code (CR, DX, CT, ...).")
        filters["ModalitiesInStudy"] = modality
    if accession:
        accession = accession.strip()
        if len(accession) > 16 or "\\" in accession:
            raise PacsError("An accession number has at most 16 characters and no backslash.")
        filters["AccessionNumber"] = accession
    return filters


def search_studies(client: DICOMwebClient, settings: PacsSettings, filters: Mapping[str, str] | None = None,
                   limit: int | None = None) -> list[StudySummary]:
    """Studies matching ``filters`` (see :func:`study_filters`), newest first; at most ``limit`` (None: as many
    as the server returns unasked)."""
    filters = dict(filters or {})
    log.info("QIDO-RS study search by %s", ", ".join(sorted(filters)) or "nothing (all studies)")
    query = dict(filters)
    accession = query.get("AccessionNumber", "")
    exact_accession = accession if accession and not set(accession) & set("*?") else None  # no user wildcard
    if exact_accession and " " in exact_accession:
        # dicomweb-client sends a space as "+" (form encoding) and some servers (Orthanc 1.10) decode neither
        # that nor %20: match any one character there instead, then keep the exact matches
        query["AccessionNumber"] = exact_accession.replace(" ", "?")
    with talking_to(settings, "search for studies"):
        found = client.search_for_studies(search_filters=query, fields=list(STUDY_FIELDS), limit=limit)
        studies = [StudySummary.from_json(item) for item in dicom_json_objects(found)]
    if exact_accession:
        studies = [s for s in studies if s.accession == exact_accession]
    log.info("QIDO-RS found %d studies", len(studies))
    return sorted(studies, key=lambda s: (s.date, s.time), reverse=True)


def find_study(client: DICOMwebClient, settings: PacsSettings, study_uid: str) -> StudySummary:
    """One study by its Study Instance UID, or a :class:`PacsError` saying it is not there."""
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)*", study_uid or "") or len(study_uid) > 64:
        raise PacsError("A Study Instance UID is digits and dots, at most 64 characters.")
    found = search_studies(client, settings, {"StudyInstanceUID": study_uid}, limit=2)
    if not found:
        raise PacsError(f"{settings.where} has no study with that Study Instance UID.")
    return found[0]


# --- the frontal chest images of a study -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRef:
    """One instance of a study, with the facts that decide whether the model may read it."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class: str
    modality: str
    series_number: int | None
    instance_number: int | None
    view: str
    body_part: str
    rows: int | None
    columns: int | None
    frames: int | None

    @property
    def name(self) -> str:
        """A file-like name for the page and downloads: series and image number, nothing identifying."""
        return f"{self.modality or 'image'}-s{self.series_number or 0}-i{self.instance_number or 0}.dcm"

    @property
    def description(self) -> str:
        view = f"{self.view} " if self.view else ""
        return f"{view}{self.modality} series {self.series_number or '?'} image {self.instance_number or '?'}"

    def why_not_read(self) -> str | None:
        """Why the model must not read this image, or None for a frontal chest radiograph."""
        if self.sop_class == DX_FOR_PROCESSING:
            return f"{self.description}: raw detector data (DX For Processing), not an image for reading"
        if self.sop_class not in (CR_STORAGE, DX_FOR_PRESENTATION):
            return f"{self.description}: not a CR or DX radiograph"
        if self.body_part and not any(p in self.body_part.upper() for p in CHEST_BODY_PARTS):
            return f"{self.description}: body part {self.body_part}, not chest"
        if self.view.upper() in LATERAL_VIEWS:
            return f"{self.description}: lateral view (the model reads frontal PA/AP views)"
        if (self.frames or 1) > 1:
            return f"{self.description}: {self.frames} frames, not a single radiograph"
        if self.rows and self.columns and self.rows * self.columns > MAX_PIXELS:
            return f"{self.description}: {self.columns} x {self.rows} px, too large to process"
        return None


@dataclass(frozen=True)
class StudyImages:
    """A study's frontal chest radiographs, and why every other image was left out."""

    study: StudySummary
    frontal: tuple[ImageRef, ...]
    skipped: tuple[str, ...]

    @property
    def note(self) -> str | None:
        """The user's message when there is nothing to score."""
        if self.frontal:
            return None
        detail = "; ".join(self.skipped[:6]) + ("; ..." if len(self.skipped) > 6 else "")
        return (f"No frontal chest radiograph in the study of {self.study.label} "
                f"(modalities {', '.join(self.study.modalities) or 'unknown'}): {detail or 'it holds no images'}. "
                "covidviz reads frontal (PA/AP) chest radiographs only.")


def frontal_chest_images(client: DICOMwebClient, settings: PacsSettings, study: StudySummary) -> StudyImages:
    """QIDO-RS series then instances of ``study``; keeps CR/DX frontal chest images, says why others are out."""
    frontal, skipped = [], []
    with talking_to(settings, "list the study's images"):
        series = client.search_for_series(study.study_uid, fields=list(SERIES_FIELDS))
        for item in sorted(dicom_json_objects(series), key=lambda s: as_int(json_value(s, "SeriesNumber", None)) or 0):
            modality = str(json_value(item, "Modality"))
            number = as_int(json_value(item, "SeriesNumber", None))
            if modality not in RADIOGRAPH_MODALITIES:
                skipped.append(f"series {number or '?'} is {modality or 'of unknown modality'}, not a radiograph")
                continue
            series_uid = str(json_value(item, "SeriesInstanceUID"))
            series_part = str(json_value(item, "BodyPartExamined"))
            for inst in dicom_json_objects(client.search_for_instances(study.study_uid, series_uid,
                                                                fields=list(INSTANCE_FIELDS))):
                ref = ImageRef(study_uid=study.study_uid, series_uid=series_uid,
                               sop_uid=str(json_value(inst, "SOPInstanceUID")), sop_class=str(json_value(inst, "SOPClassUID")),
                               modality=modality, series_number=number,
                               instance_number=as_int(json_value(inst, "InstanceNumber", None)),
                               view=str(json_value(inst, "ViewPosition")).strip(),
                               body_part=(str(json_value(inst, "BodyPartExamined")) or series_part).strip(),
                               rows=as_int(json_value(inst, "Rows", None)), columns=as_int(json_value(inst, "Columns", None)),
                               frames=as_int(json_value(inst, "NumberOfFrames", None)))
                reason = ref.why_not_read()
                (skipped.append(reason) if reason else frontal.append(ref))
    frontal.sort(key=lambda r: (r.series_number or 0, r.instance_number or 0))
    log.info("study has %d frontal chest images, %d other images or series", len(frontal), len(skipped))
    return StudyImages(study=study, frontal=tuple(frontal), skipped=tuple(skipped))


def retrieve(client: DICOMwebClient, settings: PacsSettings, ref: ImageRef) -> bytes:
    """WADO-RS one instance as DICOM Part 10 bytes, in the transfer syntax it is stored in (the loader decodes
    JPEG, JPEG-LS and JPEG 2000; asking the server to transcode would fail where it cannot)."""
    with talking_to(settings, "retrieve an image"):
        try:
            dataset = client.retrieve_instance(ref.study_uid, ref.series_uid, ref.sop_uid,
                                               media_types=(("application/dicom", "*"),))
        except requests.exceptions.HTTPError as exc:
            if exc.response is None or exc.response.status_code not in (400, 406):
                raise
            # a server that cannot send "any transfer syntax": take its default (Explicit VR Little Endian)
            dataset = client.retrieve_instance(ref.study_uid, ref.series_uid, ref.sop_uid)
    data = part10(dataset)
    if len(data) > MAX_BYTES:
        raise PacsError(f"The image is {len(data) / 2**20:.0f} MB, over the {MAX_UPLOAD_MB} MB limit.")
    return data


def _with_preamble(dataset: Dataset) -> Dataset:
    """The dataset as a DICOM file object: dicomweb-client writes what it is given, and a data set without
    preamble and "DICM" prefix is stored by some servers as is, and then cannot be read back."""
    if getattr(dataset, "preamble", None) is not None:
        return dataset
    if not getattr(dataset, "file_meta", None) or "TransferSyntaxUID" not in dataset.file_meta:
        raise PacsError("A result object has no file meta information (transfer syntax): it cannot be stored.")
    return FileDataset("", dataset, preamble=b"\0" * 128, file_meta=dataset.file_meta)


def store(client: DICOMwebClient, settings: PacsSettings, datasets: Sequence[Dataset]) -> int:
    """STOW-RS ``datasets`` (one study); the number stored, or a :class:`PacsError` naming what failed."""
    if not datasets:
        return 0
    study_uid = datasets[0].StudyInstanceUID
    with talking_to(settings, "store results"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # see covidviz.interop.part10
            response = client.store_instances([_with_preamble(ds) for ds in datasets], study_instance_uid=study_uid)
    failed = list(getattr(response, "FailedSOPSequence", []) or [])
    stored = {str(item.ReferencedSOPInstanceUID) for item in getattr(response, "ReferencedSOPSequence", []) or []}
    wanted = {str(ds.SOPInstanceUID) for ds in datasets}
    if failed or not wanted <= stored:
        reasons = sorted({str(item.get("FailureReason", "?")) for item in failed})
        raise PacsError(f"{settings.where} accepted {len(wanted & stored)} of {len(wanted)} result objects"
                        + (f" (failure reasons {', '.join(reasons)})" if reasons else "") + ".")
    log.info("STOW-RS stored %d result objects", len(wanted))
    return len(wanted)

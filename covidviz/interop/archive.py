"""A PACS as a source for archive scoring (``python -m covidviz batch pacs:QUERY``): the frontal chest
radiographs that a DICOMweb query finds, one key per instance, each fetched by WADO-RS when it is scored.

The query is what follows ``pacs:``, in URL query form: ``modality=CR&date=20240101-20240131&accession=A123``
(see :data:`QUERY_KEYS`). Studies are found by QIDO-RS (every page of them: servers cap one answer, Google's
at 100 studies unasked), then each study's series and instances, keeping the images ``pacs score`` keeps
(:func:`~covidviz.interop.pacs.frontal_chest_images`); the others are counted, never fetched.

The source is pickled into every Ray task that reads: it holds plain data only, the query and the
connection settings (so a worker on another node needs no environment of its own). The password or token
travels inside the pickle, as it must for a worker to sign in, but never appears in a repr, a message or a
log line. The listed keys are cached for the driver and left out of the pickle: an archive's list of
instances would otherwise be copied into every task.

Logging: filter names and counts at INFO, instance UIDs at DEBUG only, never a patient attribute.
"""

from __future__ import annotations

import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from dicomweb_client.api import DICOMwebClient

from covidviz.interop.dicom_json import dicom_json_objects
from covidviz.interop.pacs import (
    STUDY_FIELDS,
    ImageRef,
    StudyImages,
    StudySummary,
    frontal_chest_images,
    retrieve,
    study_filters,
)
from covidviz.interop.pacs_session import PacsError, PacsSettings, connect, talking_to

log = logging.getLogger(__name__)

KEY_PREFIX = "dicomweb:"
QUERY_KEYS = {  # each with how it is written and what it means, for the messages that list them
    "modality": "modality=CR, a modality in the study",
    "date": "date=20240301 or a range date=20240301-20240331 (YYYY-MM-DD and 2024-03-01..2024-03-31 also work; "
            "either end may be left open), the study date",
    "accession": "accession=A123, the accession number",
    "study": "study=1.2.840..., one Study Instance UID",
    "limit": "limit=100, at most this many studies (default: all that match)",
}
LISTING_THREADS = 4  # concurrent QIDO-RS requests while listing the studies' images: one study is 2+ round trips
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_QIDO_RANGE = re.compile(r"^(\d{8})?-(\d{8})?$")  # the DICOM form of a date range, as a PACS administrator types it


class ArchiveQueryError(ValueError):
    """A ``pacs:`` query that cannot be run: the message says what is wrong and what is accepted."""


@dataclass(frozen=True)
class ArchiveQuery:
    """A checked query: QIDO-RS study filters and an optional cap on the number of studies."""

    filters: dict[str, str] = field(default_factory=dict)
    limit: int | None = None

    @property
    def summary(self) -> str:
        """What the query filters on, without the values (an accession number or UID stays out of messages)."""
        named = [{"ModalitiesInStudy": "modality", "StudyDate": "date", "AccessionNumber": "accession",
                  "StudyInstanceUID": "study"}.get(k, k) for k in self.filters]
        return ("by " + ", ".join(sorted(named)) if named else "all studies") + \
            (f", at most {self.limit} studies" if self.limit else "")


def accepted_keys() -> str:
    return "; ".join(QUERY_KEYS.values())


def parse_archive_query(query: str) -> ArchiveQuery:
    """``modality=CR&date=...`` checked, or :class:`ArchiveQueryError` naming the problem and the accepted keys.
    An empty query means every study on the server."""
    text = query.strip().lstrip("?")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True) if text else []
    except ValueError:
        raise ArchiveQueryError(f"The PACS query {query!r} is not of the form key=value&key=value. Accepted keys: "
                                f"{accepted_keys()}.") from None
    given: dict[str, str] = {}
    for key, value in pairs:
        key = key.strip().lower()
        if key not in QUERY_KEYS:
            raise ArchiveQueryError(f"Unknown key {key!r} in the PACS query. Accepted keys: {accepted_keys()}.")
        if key in given:
            raise ArchiveQueryError(f"The PACS query gives {key!r} twice: give it once.")
        if not value.strip():
            raise ArchiveQueryError(f"The PACS query gives {key!r} without a value: write {QUERY_KEYS[key]}.")
        given[key] = value.strip()
    date = given.get("date")
    if date and (found := _QIDO_RANGE.match(date)):
        date = f"{found.group(1) or ''}..{found.group(2) or ''}"
    try:
        filters = study_filters(date, given.get("modality"), given.get("accession"))
    except PacsError as exc:
        raise ArchiveQueryError(f"PACS query: {exc}") from None
    if "study" in given:
        if not _UID.fullmatch(given["study"]) or len(given["study"]) > 64:
            raise ArchiveQueryError("PACS query: study= takes a Study Instance UID, digits and dots, at most 64 "
                                    "characters.")
        filters["StudyInstanceUID"] = given["study"]
    limit = None
    if "limit" in given:
        try:
            limit = int(given["limit"])
        except ValueError:
            limit = 0
        if limit < 1:
            raise ArchiveQueryError("PACS query: limit= takes a whole number of studies, at least 1.")
    return ArchiveQuery(filters=filters, limit=limit)


def instance_key(ref: ImageRef) -> str:
    """``dicomweb:<study>/<series>/<instance>``: the row's ``file`` in the results, and what resuming matches."""
    return f"{KEY_PREFIX}{ref.study_uid}/{ref.series_uid}/{ref.sop_uid}"


def parse_key(key: str) -> tuple[str, str, str]:
    """The three UIDs of an :func:`instance_key`, or ValueError for anything else."""
    parts = key[len(KEY_PREFIX):].split("/") if key.startswith(KEY_PREFIX) else []
    if len(parts) != 3 or not all(_UID.fullmatch(p) and len(p) <= 64 for p in parts):
        raise ValueError("not a PACS instance key (dicomweb:STUDY/SERIES/INSTANCE, each a DICOM UID)")
    return parts[0], parts[1], parts[2]


@lru_cache(maxsize=8)
def _client(settings: PacsSettings, thread: int) -> DICOMwebClient:
    """One client (one pooled HTTP session) per settings and thread, kept for the life of the worker process."""
    return connect(settings)


def client_for(settings: PacsSettings) -> DICOMwebClient:
    return _client(settings, threading.get_ident())


def matching_studies(client: DICOMwebClient, settings: PacsSettings, query: ArchiveQuery) -> list[StudySummary]:
    """Every study the query matches (the first ``query.limit`` of them), across as many QIDO-RS pages as the
    server splits them into, in the server's order, each once.

    Pages are asked for by ``offset`` alone and ``limit`` is applied here: Orthanc 1.10 with a ModalitiesInStudy
    filter ignores an offset sent without a limit (it sends its first page again, and dicomweb-client's
    ``get_remaining`` then loops forever) and, given both, was seen to answer an empty page with matches left.
    So the listing ends at the first page that brings no study not seen yet."""
    search = dict(query.filters)
    accession = search.get("AccessionNumber")
    if accession and " " in accession:
        # as pacs.search_studies: some servers decode neither "+" nor %20 in a query, so match one character
        # there and keep the exact matches below
        search["AccessionNumber"] = accession.replace(" ", "?")
    log.info("QIDO-RS archive study search %s", query.summary)
    found: dict[str, StudySummary] = {}
    offset = pages = 0
    with talking_to(settings, "search for studies"):
        while not query.limit or len(found) < query.limit:
            page = dicom_json_objects(client.search_for_studies(search_filters=search, fields=list(STUDY_FIELDS),
                                                         offset=offset or None))
            pages += 1
            new = [s for s in map(StudySummary.from_json, page) if s.study_uid not in found]
            if not new:
                break
            found.update((s.study_uid, s) for s in new)
            offset += len(page)
    studies = [s for s in found.values() if not accession or s.accession == accession]
    log.info("QIDO-RS archive search found %d studies (%d requests)", len(studies), pages)
    return studies[:query.limit] if query.limit else studies


@dataclass(repr=False)
class PacsArchiveSource:
    """An :class:`~covidviz.tools.batch_sources.ArchiveSource` over a DICOMweb server (see the module docstring)."""

    query: ArchiveQuery
    settings: PacsSettings  # its repr hides the password and token
    studies: int | None = None  # set by keys(): studies matched
    without_frontal: int | None = None  # of which with no frontal chest radiograph
    left_out: int | None = None  # other images and series, not scored
    _listed: tuple[str, ...] | None = field(default=None, repr=False, compare=False)

    @property
    def description(self) -> str:
        where = f"the DICOMweb server {self.settings.where}, {self.query.summary}"
        if self._listed is None:
            return f"frontal chest radiographs on {where} (not listed yet)"
        return (f"{len(self._listed)} frontal chest radiographs in {self.studies} studies on {where}; "
                f"{self.left_out} other images or series left out (not CR/DX, not chest, lateral, ...), "
                f"{self.without_frontal} studies without a frontal chest radiograph")

    def __repr__(self) -> str:  # the description: no password, no filter value (an accession number, a UID)
        return f"PacsArchiveSource({self.description})"

    def keys(self) -> list[str]:
        """One key per frontal chest instance (listed once; later calls return the same list)."""
        if self._listed is None:
            client = client_for(self.settings)
            studies = matching_studies(client, self.settings, self.query)
            with ThreadPoolExecutor(LISTING_THREADS, thread_name_prefix="qido") as pool:
                listed: list[StudyImages] = list(pool.map(self._images, studies))
            self.studies = len(studies)
            self.without_frontal = sum(not s.frontal for s in listed)
            self.left_out = sum(len(s.skipped) for s in listed)
            self._listed = tuple(instance_key(ref) for s in listed for ref in s.frontal)
            log.info("archive listing: %d frontal chest images in %d studies, %d other images or series left out",
                     len(self._listed), self.studies, self.left_out)
            for s in listed:
                for reason in s.skipped:
                    log.debug("left out: %s", reason)  # series and image numbers, views: nothing identifying
        return list(self._listed)

    def _images(self, study: StudySummary) -> StudyImages:
        return frontal_chest_images(client_for(self.settings), self.settings, study)

    def read(self, key: str) -> bytes:
        """WADO-RS of one instance as DICOM Part 10 bytes (runs in a Ray task); :class:`PacsError` when the
        server cannot give it."""
        study, series, sop = parse_key(key)
        log.debug("WADO-RS retrieve %s", key)
        # retrieve() addresses the instance by its UIDs alone; the other facts were checked when it was listed
        ref = ImageRef(study_uid=study, series_uid=series, sop_uid=sop, sop_class="", modality="",
                       series_number=None, instance_number=None, view="", body_part="", rows=None, columns=None,
                       frames=None)
        return retrieve(client_for(self.settings), self.settings, ref)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_listed": None}  # workers only read: the key list stays on the driver


def archive_source(query: str, settings: PacsSettings | None = None) -> PacsArchiveSource:
    """The source for ``batch pacs:QUERY``: the query checked now (:class:`ArchiveQueryError`), the server from
    ``COVIDVIZ_DICOMWEB_*`` unless ``settings`` are given (:class:`PacsError` when none is configured). Nothing
    is sent to the server until :meth:`PacsArchiveSource.keys`."""
    checked = parse_archive_query(query)
    return PacsArchiveSource(query=checked, settings=settings or PacsSettings.from_env())

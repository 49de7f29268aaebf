"""A DICOMweb connection to a PACS with dicomweb-client: search studies (QIDO-RS), find and retrieve their
frontal chest radiographs (WADO-RS), store results back (STOW-RS).

Settings come from the environment (or a caller's own settings object), never from code: the URL of the
DICOMweb root and, where the server asks for them, a user and password or a bearer token. Credentials never
appear in a message, a log line or a repr. Every failure a user can meet (no server, wrong address, refused
credentials, a server that answers something other than DICOMweb) becomes a :class:`PacsError` whose text
says what is wrong and what to check.

Logging: counts and steps only. No patient attribute is ever logged; the DICOM JSON a server returns is
reduced to the study and image facts below and dropped.
"""

from __future__ import annotations

import io
import logging
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from urllib.parse import urlsplit, urlunsplit

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset, FileDataset

from covidviz.io.dicom import LATERAL_VIEWS, RADIOGRAPH_MODALITIES
from covidviz.io.loading import MAX_BYTES, MAX_UPLOAD_MB
from covidviz.io.xray import MAX_PIXELS

log = logging.getLogger(__name__)

ENV_URL = "COVIDVIZ_DICOMWEB_URL"
ENV_USER = "COVIDVIZ_DICOMWEB_USER"
ENV_PASSWORD = "COVIDVIZ_DICOMWEB_PASSWORD"
ENV_TOKEN = "COVIDVIZ_DICOMWEB_TOKEN"
ENV_TIMEOUT = "COVIDVIZ_DICOMWEB_TIMEOUT"
DEFAULT_TIMEOUT_S = 30.0
RETRY_ATTEMPTS = 3  # on 408/429/503/504 only (dicomweb-client's back-off), so a busy server gets a second chance

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
CHEST_BODY_PARTS = ("CHEST", "THORAX")  # as the loader's body-part warning reads BodyPartExamined

STUDY_FIELDS = ("StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "StudyDescription",
                "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
SERIES_FIELDS = ("Modality", "SeriesNumber", "SeriesDescription", "BodyPartExamined")
INSTANCE_FIELDS = ("SOPClassUID", "InstanceNumber", "ViewPosition", "BodyPartExamined", "Rows", "Columns",
                   "NumberOfFrames")


class PacsError(RuntimeError):
    """A PACS problem in words a user can act on (safe to show: no credentials, no patient data)."""


# --- settings --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PacsSettings:
    """Where the DICOMweb server is and how to sign in. ``repr`` and :attr:`where` never show a secret."""

    url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        parts = urlsplit(self.url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PacsError(f"The DICOMweb address must be an http:// or https:// URL of the server's DICOMweb "
                            f"root (for Orthanc: http://host:8042/dicom-web); got {_redacted(self.url)!r}.")
        if parts.username or parts.password:
            raise PacsError(f"Put the user name and password in {ENV_USER} and {ENV_PASSWORD}, not in the URL: "
                            "a URL ends up in logs and shell histories.")
        if parts.query or parts.fragment:
            raise PacsError("The DICOMweb address must not carry a query or fragment: give the service root only.")
        if (self.user is None) != (self.password is None):
            raise PacsError(f"Set both {ENV_USER} and {ENV_PASSWORD} (or neither).")
        if self.token and self.user:
            raise PacsError(f"Set either a bearer token ({ENV_TOKEN}) or a user and password, not both.")
        object.__setattr__(self, "url", urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", "")))

    @classmethod
    def from_env(cls, url: str | None = None, environ: Mapping[str, str] | None = None) -> PacsSettings:
        """Settings from ``COVIDVIZ_DICOMWEB_*``; ``url`` (a command-line flag) overrides the URL only."""
        env = os.environ if environ is None else environ
        url = url or env.get(ENV_URL, "").strip()
        if not url:
            raise PacsError(f"No PACS is configured: set {ENV_URL} to the server's DICOMweb root, e.g. "
                            "http://localhost:8042/dicom-web for Orthanc (and, if it asks for them, "
                            f"{ENV_USER} and {ENV_PASSWORD}, or {ENV_TOKEN}).")
        try:
            timeout = float(env.get(ENV_TIMEOUT) or DEFAULT_TIMEOUT_S)
        except ValueError:
            raise PacsError(f"{ENV_TIMEOUT} must be a number of seconds.") from None
        return cls(url=url, user=env.get(ENV_USER) or None, password=env.get(ENV_PASSWORD) or None,
                   token=env.get(ENV_TOKEN) or None, timeout_s=timeout)

    @property
    def where(self) -> str:
        """The server as messages name it: scheme, host, port and path."""
        return self.url


def _redacted(url: str) -> str:
    """``url`` without user information, query or fragment (for messages about a URL that was refused)."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "(unparseable)"


class _WildcardSession(requests.Session):
    """dicomweb-client percent-encodes QIDO-RS wildcards (``*`` to %2A, ``?`` to %3F); servers that do not
    decode query values (Orthanc 1.10) then match them literally. Both characters are legal in a query
    (RFC 3986), so they are sent as they are: a server that decodes sees the same value."""

    def request(self, method: str | bytes, url: str | bytes, *args, **kwargs):  # type: ignore[override]
        if isinstance(url, str) and "?" in url:
            path, query = url.split("?", 1)
            url = path + "?" + query.replace("%2A", "*").replace("%3F", "?")
        return super().request(method, url, *args, **kwargs)


def connect(settings: PacsSettings) -> DICOMwebClient:
    """A dicomweb-client for these settings (no request is sent yet)."""
    session = _WildcardSession()
    session.trust_env = True  # proxies and REQUESTS_CA_BUNDLE for a hospital's own certificate authority
    if settings.user is not None:
        session.auth = (settings.user, settings.password or "")
    if settings.token:
        session.headers["Authorization"] = f"Bearer {settings.token}"
    client = DICOMwebClient(url=settings.url, session=session, timeout=settings.timeout_s)
    client.set_http_retry_params(max_attempts=RETRY_ATTEMPTS, wait_exponential_multiplier=500)
    return client


@contextmanager
def talking_to(settings: PacsSettings, action: str) -> Iterator[None]:
    """Turn whatever the network or server raises into a :class:`PacsError` that says what to check."""
    where = settings.where
    try:
        yield
    except PacsError:
        raise
    except requests.exceptions.HTTPError as exc:
        raise PacsError(_http_message(exc.response, where, action)) from None
    except requests.exceptions.SSLError:
        raise PacsError(f"The TLS certificate of {where} was not accepted while trying to {action}. If the hospital "
                        "uses its own certificate authority, point REQUESTS_CA_BUNDLE at its certificate.") from None
    except requests.exceptions.Timeout:
        raise PacsError(f"{where} did not answer within {settings.timeout_s:.0f} s while trying to {action} "
                        f"(raise {ENV_TIMEOUT} for a slow server).") from None
    except requests.exceptions.ConnectionError as exc:
        raise PacsError(f"The PACS at {where} cannot be reached ({_root_cause(exc)}) while trying to {action}. "
                        f"Check the address ({ENV_URL}) and that the server is running.") from None
    except (requests.exceptions.RequestException, ValueError, KeyError, TypeError) as exc:
        # JSON or multipart that is not DICOMweb: a web page, a proxy's error page, another API
        raise PacsError(f"{where} answered, but not as a DICOMweb server would, while trying to {action} "
                        f"({type(exc).__name__}). Is {ENV_URL} the DICOMweb root (for Orthanc: .../dicom-web)?"
                        ) from None


def _http_message(response: requests.Response | None, where: str, action: str) -> str:
    status = response.status_code if response is not None else 0
    reason = (response.reason if response is not None else "") or "error"
    if status in (401, 407):
        return (f"{where} refused to {action} without valid credentials (HTTP {status}): set {ENV_USER} and "
                f"{ENV_PASSWORD}, or {ENV_TOKEN}, to an account it accepts.")
    if status == 403:
        return (f"{where} refused to {action} (HTTP 403 Forbidden): the account or this machine is not allowed "
                "to; ask the PACS administrators for access.")
    if status == 404:
        return (f"{where} has no DICOMweb service at this address (HTTP 404) or the item is gone: {ENV_URL} must "
                "be the DICOMweb root, for Orthanc http://host:8042/dicom-web with the DICOMweb plugin enabled.")
    if status in (400, 405, 406):
        return (f"{where} refused to {action} (HTTP {status} {reason}). Is {ENV_URL} the DICOMweb root (for "
                "Orthanc: http://host:8042/dicom-web)?")
    if status == 413:
        return f"{where} refused to {action}: the request is larger than it accepts (HTTP 413)."
    return f"{where} refused to {action} (HTTP {status} {reason})."


def _root_cause(exc: BaseException) -> str:
    """The operating system's reason (connection refused, name not known) without URLs or queries."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        for arg in getattr(seen, "args", ()):
            if isinstance(arg, BaseException) and arg is not seen:
                found = _root_cause_of_arg(arg)
                if found:
                    return found
        seen = seen.__cause__ or seen.__context__
    text = str(exc).lower()
    for known in ("connection refused", "name or service not known", "no route to host", "network is unreachable",
                  "temporary failure in name resolution", "connection reset"):
        if known in text:
            return known
    return "no connection"


def _root_cause_of_arg(arg: BaseException) -> str | None:
    reason = getattr(arg, "reason", None)
    for candidate in (arg, reason):
        if isinstance(candidate, OSError) and candidate.strerror:
            return candidate.strerror.lower()
    return None


# --- search ----------------------------------------------------------------------------------------------------------


def _dicom_json(found: object) -> list[Mapping]:
    """A QIDO-RS answer checked to be DICOM JSON objects (a server's native API may answer the same path with
    something else); ValueError otherwise, which :func:`talking_to` reports."""
    if not isinstance(found, list) or not all(isinstance(item, Mapping) for item in found):
        raise ValueError("not a list of DICOM JSON objects")
    return found


def _value(item: Mapping, keyword: str, default: object = "") -> object:
    """One attribute of a DICOM JSON object (first value), without building a dataset of the whole object."""
    tag = f"{pydicom.datadict.tag_for_keyword(keyword):08X}"
    values = item.get(tag, {}).get("Value") or []
    if not values:
        return default
    first = values[0]
    return first.get("Alphabetic", default) if isinstance(first, dict) else first


def _values(item: Mapping, keyword: str) -> tuple[str, ...]:
    tag = f"{pydicom.datadict.tag_for_keyword(keyword):08X}"
    return tuple(str(v) for v in item.get(tag, {}).get("Value") or [])


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


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
        return cls(study_uid=str(_value(item, "StudyInstanceUID")), date=str(_value(item, "StudyDate")),
                   time=str(_value(item, "StudyTime")), accession=str(_value(item, "AccessionNumber")),
                   modalities=_values(item, "ModalitiesInStudy"), description=str(_value(item, "StudyDescription")),
                   n_series=_int(_value(item, "NumberOfStudyRelatedSeries", None)),
                   n_images=_int(_value(item, "NumberOfStudyRelatedInstances", None)))

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
        studies = [StudySummary.from_json(item) for item in _dicom_json(found)]
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
        for item in sorted(_dicom_json(series), key=lambda s: _int(_value(s, "SeriesNumber", None)) or 0):
            modality = str(_value(item, "Modality"))
            number = _int(_value(item, "SeriesNumber", None))
            if modality not in RADIOGRAPH_MODALITIES:
                skipped.append(f"series {number or '?'} is {modality or 'of unknown modality'}, not a radiograph")
                continue
            series_uid = str(_value(item, "SeriesInstanceUID"))
            series_part = str(_value(item, "BodyPartExamined"))
            for inst in _dicom_json(client.search_for_instances(study.study_uid, series_uid,
                                                                fields=list(INSTANCE_FIELDS))):
                ref = ImageRef(study_uid=study.study_uid, series_uid=series_uid,
                               sop_uid=str(_value(inst, "SOPInstanceUID")), sop_class=str(_value(inst, "SOPClassUID")),
                               modality=modality, series_number=number,
                               instance_number=_int(_value(inst, "InstanceNumber", None)),
                               view=str(_value(inst, "ViewPosition")).strip(),
                               body_part=(str(_value(inst, "BodyPartExamined")) or series_part).strip(),
                               rows=_int(_value(inst, "Rows", None)), columns=_int(_value(inst, "Columns", None)),
                               frames=_int(_value(inst, "NumberOfFrames", None)))
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
    return part10(dataset)


def part10(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a warning about an odd value would quote it, and it may be the patient's
        dataset.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
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
            warnings.simplefilter("ignore")  # see part10
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

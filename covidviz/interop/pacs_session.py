"""The DICOMweb session to a PACS: settings from the environment, the dicomweb-client that signs in with
them, and :func:`talking_to`, which turns what the network or server raises into a :class:`PacsError`.

Settings come from the environment (or a caller's own settings object), never from code: the URL of the
DICOMweb root and, where the server asks for them, a user and password or a bearer token. Credentials never
appear in a message, a log line or a repr. Every failure a user can meet (no server, wrong address, refused
credentials, a server that answers something other than DICOMweb) becomes a :class:`PacsError` whose text
says what is wrong and what to check.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import requests
from dicomweb_client.api import DICOMwebClient

ENV_URL = "COVIDVIZ_DICOMWEB_URL"
ENV_USER = "COVIDVIZ_DICOMWEB_USER"
ENV_PASSWORD = "COVIDVIZ_DICOMWEB_PASSWORD"
ENV_TOKEN = "COVIDVIZ_DICOMWEB_TOKEN"
ENV_TIMEOUT = "COVIDVIZ_DICOMWEB_TIMEOUT"
DEFAULT_TIMEOUT_S = 30.0
RETRY_ATTEMPTS = 3  # on 408/429/503/504 only (dicomweb-client's back-off), so a busy server gets a second chance


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

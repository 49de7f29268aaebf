"""Structured logs of the dashboard's requests: what was read, how large, how long each step took, what failed.

Operators need these to size and debug a shared server; patients need them to say nothing about anyone.
So a record carries sizes, formats, durations, outcomes and the model version, never a file name (names
often are the patient's), a DICOM value, an error text that may echo either, or pixels. Each record's
fields ride in ``extra`` under ``covidviz`` for JSON formatters, and as ``key=value`` in the message for
plain ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from covidviz.io.loading import sniff_format

log = logging.getLogger("covidviz.ui.requests")

# Other libraries' loggers that would say what a patient's study is: dicomweb-client logs study and instance
# UIDs at INFO, urllib3 every request URL (UIDs in the path, query parameters) at DEBUG. The dashboard holds
# them at WARNING whatever the root logger's level (Streamlit's --logger.level debug included).
QUIET_LIBRARIES = {"dicomweb_client": logging.WARNING, "urllib3": logging.WARNING}

Field = str | int | float | bool | None


def quiet_libraries() -> None:
    """Set :data:`QUIET_LIBRARIES` (idempotent; ``app.py`` calls it on every run)."""
    for name, level in QUIET_LIBRARIES.items():
        logging.getLogger(name).setLevel(level)


def log_event(event: str, level: int = logging.INFO, **fields: Field) -> None:
    """One structured record: ``event`` plus scalar fields (callers pass no user-controlled text)."""
    if log.isEnabledFor(level):
        text = " ".join(f"{k}={v}" for k, v in fields.items())
        log.log(level, "%s %s", event, text, extra={"covidviz": {"event": event, **fields}})


def upload_fields(data: bytes) -> dict[str, Field]:
    """What may be said about an upload: its size and the format its content (not its name) declares."""
    return {"bytes": len(data), "format": sniff_format(data) or "unknown"}


@contextmanager
def timer(fields: dict[str, Field], name: str) -> Iterator[None]:
    """Add the body's wall time to ``fields`` as ``<name>_ms`` (also when it raises)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        fields[f"{name}_ms"] = round((time.perf_counter() - started) * 1000, 1)


def log_failure(what: str, exc: BaseException) -> None:
    """An error kept off the page (it may name server paths): the class on a structured record, the
    traceback for the operator. Only for exceptions whose text carries no patient data (weights, files)."""
    log_event("error", logging.ERROR, where=what, error=exc.__class__.__name__)
    logging.getLogger("covidviz.ui").error("%s failed", what, exc_info=exc)

"""Recording audit events without ever delaying or breaking a prediction.

Callers put events on a bounded queue and return at once; one background thread per process writes them
in batches (migrating the database on its first write). A database that is down, locked or full costs a
logged error and the lost events, never the caller's result. The queue is flushed at interpreter exit, so
a short-lived CLI run still lands its records.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from covidviz.audit.db import database_url, migrate, safe_url
from covidviz.audit.events import (
    AuditEvent,
    calibration_fields,
    content_sha256,
    event_from_result,
    model_identity,
    probabilities_dict,
)
from covidviz.audit.identity import Actor
from covidviz.audit.models import AuditRecord

if TYPE_CHECKING:
    from covidviz.model.predictor import Prediction

log = logging.getLogger("covidviz.audit")
QUEUE_SIZE = 10_000
WRITE_BATCH = 500
EXIT_FLUSH_S = 15.0


def write_events(events: Sequence[AuditEvent], url: str | None = None) -> int:
    """Insert events in one transaction (synchronous; raises on database errors). Returns the count."""
    if not events:
        return 0
    from sqlalchemy import insert
    from sqlalchemy.orm import Session
    engine = migrate(url)
    with Session(engine) as session, session.begin():
        session.execute(insert(AuditRecord), [e.as_row() for e in events])
    return len(events)


class AuditRecorder:
    """A bounded queue and a daemon thread that drains it into one database."""

    def __init__(self, url: str | None = None, maxsize: int = QUEUE_SIZE) -> None:
        self.url = database_url(url)
        self._queue: queue.Queue[AuditEvent] = queue.Queue(maxsize=maxsize)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.written = 0
        self.dropped = 0

    def record(self, events: AuditEvent | Iterable[AuditEvent], wait: bool = False) -> None:
        """Queue events. ``wait=False`` (interactive use) drops an event when the queue is full rather than
        wait; ``wait=True`` (batch jobs, which produce faster than any database accepts) waits for room."""
        self._ensure_thread()
        for event in [events] if isinstance(events, AuditEvent) else events:
            try:
                self._queue.put(event, block=wait)
            except queue.Full:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.error("audit queue full: %d events dropped so far (database %s too slow or down)",
                              self.dropped, safe_url(self.url))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued event was written or given up on; False when ``timeout`` ran out."""
        if self._thread is None:
            return True
        done = threading.Event()

        def wait_for_queue() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait_for_queue, daemon=True).start()
        return done.wait(timeout)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="covidviz-audit-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < WRITE_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self.written += write_events(batch, self.url)
            except Exception:  # noqa: BLE001  (whatever the database does, the caller's prediction stands)
                log.exception("audit: %d events could not be written to %s", len(batch), safe_url(self.url))
            finally:
                for _ in batch:
                    self._queue.task_done()


_recorders: dict[str, AuditRecorder] = {}
_recorders_lock = threading.Lock()


def get_recorder(url: str | None = None) -> AuditRecorder:
    """The process's recorder for ``url`` (default: ``COVIDVIZ_DB_URL`` or the local SQLite file)."""
    key = database_url(url)
    with _recorders_lock:
        if key not in _recorders:
            _recorders[key] = AuditRecorder(key)
        return _recorders[key]


def flush_all(timeout: float = EXIT_FLUSH_S) -> bool:
    """Flush every recorder of this process (called at exit)."""
    with _recorders_lock:
        recorders = list(_recorders.values())
    return all(r.flush(timeout) for r in recorders)


atexit.register(flush_all)


def _safely(what: str, build, url: str | None, wait: bool = False) -> None:
    try:
        get_recorder(url).record(build(), wait=wait)
    except Exception:  # noqa: BLE001  (a bad event or a broken recorder is logged, the caller goes on)
        log.exception("audit: the %s could not be recorded", what)


def record_prediction(interface: str, content: bytes | Path, probabilities: Sequence[float] | Mapping[str, float],
                      *, sidecar: Mapping[str, Any] | None, warnings: Sequence[str] = (), ood: str | None = None,
                      ood_distance: float | None = None, lung_field_plausible: bool | None = None,
                      verdict: tuple[str | None, str | None] | None = None, url: str | None = None) -> None:
    """Record a scored input. ``content`` is the input's bytes (or its file), hashed here and never kept;
    ``sidecar`` is the model's (``Predictor.sidecar``), for its name and weights sha256; ``verdict`` the
    (class, reason for none) of ``Predictor.verdict`` (default: the most probable class). Never raises."""
    def build() -> AuditEvent:
        probs = probabilities_dict(probabilities)
        name, sha = model_identity(sidecar)
        label, abstained = verdict if verdict is not None else (max(probs, key=probs.get), None)
        return AuditEvent(kind="prediction", interface=interface, input_sha256=content_sha256(content),
                          model_name=name, model_sha256=sha, probabilities=probs,
                          predicted_class=label, abstained=abstained, ood=ood,
                          ood_distance=None if ood_distance is None else float(ood_distance),
                          lung_field_plausible=lung_field_plausible, warnings=tuple(warnings),
                          **calibration_fields(sidecar))
    _safely("prediction", build, url)


def record_rejection(interface: str, content: bytes | Path, error: str, *,
                     sidecar: Mapping[str, Any] | None = None, url: str | None = None) -> None:
    """Record an input that was refused, with the message its user saw. Never raises."""
    def build() -> AuditEvent:
        name, sha = model_identity(sidecar)
        return AuditEvent(kind="rejection", interface=interface, input_sha256=content_sha256(content),
                          model_name=name, model_sha256=sha, error=str(error))
    _safely("rejection", build, url)


def record_heatmap(interface: str, input_sha256: str | None, method: str, *, sidecar: Mapping[str, Any] | None,
                   class_name: str | None = None, lung_energy: float | None = None,
                   url: str | None = None) -> None:
    """Record that a heatmap was shown for an input already recorded (by its content hash). Never raises."""
    def build() -> AuditEvent:
        name, sha = model_identity(sidecar)
        energy = None if lung_energy is None or lung_energy != lung_energy else float(lung_energy)
        return AuditEvent(kind="heatmap", interface=interface, input_sha256=input_sha256, model_name=name,
                          model_sha256=sha, heatmap_method=method, heatmap_class=class_name, lung_energy=energy)
    _safely("heatmap", build, url)


def record_outcome(interface: str, content: bytes | Path, prediction: Prediction, predictor: Any,
                   url: str | None = None) -> None:
    """Record what a :class:`~covidviz.model.predictor.Predictor` returned for one input: a prediction, or a
    rejection when it carries an error. The hook for the CLI and the PACS connection. Never raises."""
    def build() -> AuditEvent:
        return event_from_result(interface, content_sha256(content), prediction.as_json(), predictor.sidecar,
                                 getattr(predictor, "guard", None) is not None)
    _safely("prediction", build, url)


def record_results(interface: str, rows: Iterable[tuple[str | None, Mapping[str, Any]]],
                   sidecar: Mapping[str, Any] | None, guard_present: bool, url: str | None = None) -> None:
    """Record many ``predict --json`` results with their inputs' content hashes (batch jobs: waits for room
    in the queue instead of dropping). Never raises."""
    _safely("batch results",
            lambda: [event_from_result(interface, sha, row, sidecar, guard_present) for sha, row in rows], url,
            wait=True)


def record_access(kind: str, *, resource: str | None = None, note: str | None = None, actor: Actor | None = None,
                  url: str | None = None) -> None:
    """Record a dashboard access event (``sign_in``, ``sign_out``, ``session_timeout``, ``access_refused``)
    about ``resource`` (a page's URL path or an action), for ``actor`` (default: who is acting now).
    ``note`` is the message the user saw. Never raises."""
    def build() -> AuditEvent:
        extra = {"actor": actor} if actor is not None else {}
        return AuditEvent(kind=kind, interface="dashboard", input_sha256=None, resource=resource, error=note,
                          **extra)
    _safely(kind, build, url)

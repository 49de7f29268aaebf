"""One queue for the server's heavy work: model passes and slow heatmap methods, readings first, then first come
first served.

Streamlit runs every session's script in its own thread, and two torch threads collapse when another
CPU-heavy job runs beside them. So at most ``slots`` jobs run at once in the process; the others wait their
turn and are told their place. Readings (an upload's verdict and first heatmap, a PACS study's score) go before
explanations (the library heatmap methods): a clinician waiting for a verdict does not wait behind another
user's Score-CAM, which takes seconds to minutes and was asked for knowing that. Within a kind, arrival order. A waiting session that is interrupted (its user changes the
input, or leaves: Streamlit raises inside the script thread at the next page update) leaves the queue on the
way out, so an abandoned request never holds a place.

No job holds its slot forever: one running longer than ``limit`` seconds is set aside by the next waiter,
which takes the slot. A Python thread cannot be stopped from outside, so the overrunning job runs on
beside the others; its session is told, when it ends, that it overran and others went ahead. Decoding an
upload never runs in the queue (it runs in a worker process with limits of its own, covidviz.io.isolation):
only model passes and heatmaps do, and those take seconds.
"""

from __future__ import annotations

import bisect
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import streamlit as st

POLL_SECONDS = 0.25  # how often a waiting session refreshes its message (and so can be interrupted)
JOB_SECONDS = float(os.environ.get("COVIDVIZ_JOB_SECONDS", "120"))  # Score-CAM, the slowest job, takes ~25 s a map
READING = 0  # a job's priority: lower goes first
EXPLANATION = 1


class Job:
    """A held slot; ``overran`` turns true when the job outlived the queue's limit and lost its slot."""

    def __init__(self, ticket: int) -> None:
        self.ticket = ticket
        self.started = time.monotonic()
        self.overran = False


class ComputeQueue:
    """A counting semaphore that serves waiters by priority, then arrival (FIFO), and reports each one's position."""

    def __init__(self, slots: int = 1, limit: float = JOB_SECONDS) -> None:
        if slots < 1:
            raise ValueError("a compute queue needs at least one slot")
        if limit <= 0:
            raise ValueError("a compute queue's time limit must be positive")
        self.slots = slots
        self.limit = limit
        self._jobs: dict[int, Job] = {}
        self._waiting: list[tuple[int, int]] = []  # (priority, ticket), in the order they will be served
        self._tickets = itertools.count()
        self._changed = threading.Condition()

    @property
    def waiting(self) -> int:
        with self._changed:
            return len(self._waiting)

    @property
    def running(self) -> int:
        """Jobs holding a slot (an overrun job no longer does, though its thread may still be busy)."""
        with self._changed:
            return len(self._jobs)

    def _set_aside_overruns(self) -> None:
        now = time.monotonic()
        for ticket, job in list(self._jobs.items()):
            if now - job.started > self.limit:
                job.overran = True
                del self._jobs[ticket]

    def _place(self, ticket: int) -> int:
        return next((i + 1 for i, (_, t) in enumerate(self._waiting) if t == ticket), 0)

    def position(self, ticket: int) -> int:
        """1 for the next in line; 0 when not waiting. A reading that arrives later may move ahead of an
        explanation, so an explanation's position can grow while it waits."""
        with self._changed:
            return self._place(ticket)

    @contextmanager
    def slot(self, on_wait: Callable[[int], None] | None = None, poll: float = POLL_SECONDS,
             priority: int = READING) -> Iterator[Job]:
        """Hold one slot for the body; while waiting, call ``on_wait(position)`` every ``poll`` seconds.
        ``priority`` (:data:`READING` or :data:`EXPLANATION`): lower is served first, then arrival order.

        An exception raised while waiting (by ``on_wait`` or the thread being stopped) removes the ticket. The
        job yielded says, once the body has run, whether it overran the limit and lost its slot."""
        with self._changed:
            ticket = next(self._tickets)
            entry = (priority, ticket)
            bisect.insort(self._waiting, entry)
        try:
            while True:
                with self._changed:
                    self._set_aside_overruns()
                    if self._waiting[0] == entry and len(self._jobs) < self.slots:
                        self._waiting.pop(0)
                        job = self._jobs[ticket] = Job(ticket)
                        break
                    position = self._place(ticket)
                    if on_wait is None:
                        self._changed.wait(poll)
                        continue
                on_wait(position)
                with self._changed:
                    self._changed.wait(poll)
        except BaseException:
            with self._changed:
                if entry in self._waiting:
                    self._waiting.remove(entry)
                self._changed.notify_all()
            raise
        try:
            yield job
        finally:
            with self._changed:
                self._jobs.pop(ticket, None)
                self._changed.notify_all()


SERVER_SLOTS = 1  # torch already uses every core for one pass; a second pass at once only slows both


@st.cache_resource(show_spinner=False)
def server_queue() -> ComputeQueue:
    """The process-wide queue (one per Streamlit server, shared by every session)."""
    return ComputeQueue(SERVER_SLOTS)


def overrun_message(what: str, limit: float) -> str:
    return (f"{what} took longer than {limit:.0f} s, the most one request may hold the server; other users' "
            "requests went ahead meanwhile. The result below is complete, but the server is busy or the request "
            "unusually heavy.")


def waiting_message(what: str, position: int) -> str:
    ahead = "1 request" if position == 1 else f"{position} requests"
    return (f"{what}: waiting for the server, {ahead} ahead of yours. Your place is kept while this page is open; "
            "changing the upload or the settings gives it up.")


@contextmanager
def queued(what: str, priority: int = READING) -> Iterator[None]:
    """Run the body in the server's queue, telling this session its place while it waits."""
    note = st.empty()
    queue = server_queue()
    try:
        with queue.slot(lambda position: note.info(waiting_message(what, position)), priority=priority) as job:
            note.empty()
            yield
    finally:
        note.empty()
    if job.overran:
        st.warning(overrun_message(what, queue.limit))

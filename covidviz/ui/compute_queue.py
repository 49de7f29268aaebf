"""One queue for the server's heavy work: model passes and slow heatmap methods, first come first served.

Streamlit runs every session's script in its own thread, and two torch threads collapse when another
CPU-heavy job runs beside them. So at most ``slots`` jobs run at once in the process; the others wait their
turn in arrival order and are told their place. A waiting session that is interrupted (its user changes the
input, or leaves: Streamlit raises inside the script thread at the next page update) leaves the queue on the
way out, so an abandoned request never holds a place.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import streamlit as st

POLL_SECONDS = 0.25  # how often a waiting session refreshes its message (and so can be interrupted)


class ComputeQueue:
    """A fair (FIFO) counting semaphore that reports each waiter's position."""

    def __init__(self, slots: int = 1) -> None:
        if slots < 1:
            raise ValueError("a compute queue needs at least one slot")
        self.slots = slots
        self._running = 0
        self._waiting: deque[int] = deque()
        self._tickets = itertools.count()
        self._changed = threading.Condition()

    @property
    def waiting(self) -> int:
        with self._changed:
            return len(self._waiting)

    @property
    def running(self) -> int:
        with self._changed:
            return self._running

    def position(self, ticket: int) -> int:
        """1 for the next in line; 0 when not waiting."""
        with self._changed:
            return self._waiting.index(ticket) + 1 if ticket in self._waiting else 0

    @contextmanager
    def slot(self, on_wait: Callable[[int], None] | None = None, poll: float = POLL_SECONDS) -> Iterator[None]:
        """Hold one slot for the body; while waiting, call ``on_wait(position)`` every ``poll`` seconds.

        An exception raised while waiting (by ``on_wait`` or the thread being stopped) removes the ticket."""
        with self._changed:
            ticket = next(self._tickets)
            self._waiting.append(ticket)
        try:
            while True:
                with self._changed:
                    if self._waiting[0] == ticket and self._running < self.slots:
                        self._waiting.popleft()
                        self._running += 1
                        break
                    position = self._waiting.index(ticket) + 1
                    if on_wait is None:
                        self._changed.wait(poll)
                        continue
                on_wait(position)
                with self._changed:
                    self._changed.wait(poll)
        except BaseException:
            with self._changed:
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                self._changed.notify_all()
            raise
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()


SERVER_SLOTS = 1  # torch already uses every core for one pass; a second pass at once only slows both


@st.cache_resource(show_spinner=False)
def server_queue() -> ComputeQueue:
    """The process-wide queue (one per Streamlit server, shared by every session)."""
    return ComputeQueue(SERVER_SLOTS)


def waiting_message(what: str, position: int) -> str:
    ahead = "1 request" if position == 1 else f"{position} requests"
    return (f"{what}: waiting for the server, {ahead} ahead of yours. Your place is kept while this page is open; "
            "changing the upload or the settings gives it up.")


@contextmanager
def queued(what: str) -> Iterator[None]:
    """Run the body in the server's queue, telling this session its place while it waits."""
    note = st.empty()
    try:
        with server_queue().slot(lambda position: note.info(waiting_message(what, position))):
            note.empty()
            yield
    finally:
        note.empty()

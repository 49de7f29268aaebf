"""The server-wide bound on what sessions keep between reruns.

Each session keeps its readings within its own budget (``diagnose_view.SESSION_BYTES``). Sessions are many,
so the server also tallies what all of them keep together: over ``SERVER_BYTES`` a session keeps only the
reading it is showing. What a reading costs while it is made (the full-resolution decode) is bounded apart,
by the compute queue: one at a time.
"""

from __future__ import annotations

import threading
import weakref

SERVER_BYTES = 1024 * 2**20  # readings kept by all sessions together (about 60 of the largest)


class KeptMemory:
    """A process-wide tally of kept objects' bytes; an object leaves it when it is garbage-collected."""

    def __init__(self, limit: int = SERVER_BYTES) -> None:
        self.limit = limit
        self._sizes: dict[int, int] = {}
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def keep(self, obj: object, size: int) -> None:
        """Count ``obj`` until it is collected (an id is unique only while its object lives)."""
        key = id(obj)
        with self._lock:
            if key in self._sizes:
                return
            self._sizes[key] = size
        weakref.finalize(obj, self._forget, key)

    def over(self) -> bool:
        return self.total > self.limit

    def _forget(self, key: int) -> None:
        with self._lock:
            self._sizes.pop(key, None)


_KEPT = KeptMemory()


def server_kept() -> KeptMemory:
    """The tally of this server process (module state: one per process, shared by every session)."""
    return _KEPT

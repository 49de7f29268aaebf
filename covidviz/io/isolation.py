"""Untrusted files are decoded in worker processes that can be stopped: a hostile file costs its sender a
message, never the server.

A decoder that loops or allocates without bound inside the serving process holds whatever that process
serves: on the dashboard, every session. So :func:`read_untrusted` hands the bytes to a pre-started worker
process that runs :func:`~covidviz.io.loading.load_xray` under an address-space limit (``RLIMIT_AS``) and
lets it spend at most ``DECODE_SECONDS`` of processor time on the file (and ``WALL_FACTOR`` times that on the
clock, for a decoder stuck without computing); a worker that overruns, runs out of memory or dies is killed
and replaced, and the caller gets an :class:`XrayInputError` saying which. The limit counts the worker's
processor time, not the clock, because on a busy server the clock also counts the other sessions' work: a
46-megapixel PNG that reads in 3 s alone took over 10 s of clock time under eight sessions on two cores, and
was refused as malformed. Pixels come back through a
shared-memory block the caller creates and removes (one copy on each side), not pickled through the pipe;
where shared memory cannot be had (a small ``/dev/shm``) they come through the pipe instead.

Trusted files (the training collection, the test fixtures) are read in-process with ``load_xray``: the
isolation is for what arrives from outside (uploads, PACS retrievals, ``predict`` and ``batch`` inputs).
"""

from __future__ import annotations

import mmap
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import numpy as np

from covidviz.errors import XrayInputError
from covidviz.io.child_process import start_child
from covidviz.io.decode_worker import address_space, cpu_seconds
from covidviz.io.loading import file_bytes
from covidviz.io.xray import Xray

DECODE_SECONDS = float(os.environ.get("COVIDVIZ_DECODE_SECONDS", "10"))  # of the worker's processor time
WALL_FACTOR = 8.0  # the clock allows this many times DECODE_SECONDS: a decoder frozen or starved that long
POLL_SECONDS = 0.05  # how often a waiting caller looks at the worker's processor time
_SIZES_READ_FAST = "a radiograph of any accepted size reads in a few seconds"
DECODE_MEMORY = int(os.environ.get("COVIDVIZ_DECODE_MEMORY_MB", "2048")) * 2**20  # above a started worker's own
DECODE_WORKERS = int(os.environ.get("COVIDVIZ_DECODE_WORKERS", "2"))
START_SECONDS = 120.0  # a worker imports numpy, Pillow and pydicom: seconds on a loaded machine, never minutes
RETIRE_SHARE = 0.5  # a worker left holding over half its memory limit after a decode is replaced
PIPE_BYTES = 1 << 20  # files up to this size go down the pipe; larger ones through shared memory


class DecodeWorker:
    """One worker process (:mod:`covidviz.io.decode_worker`) and its two pipes; :meth:`decode` kills and
    replaces the process when it overruns its time, and replaces it when it dies or keeps too much memory."""

    def __init__(self, seconds: float = DECODE_SECONDS, memory: int = DECODE_MEMORY) -> None:
        self.seconds = seconds
        self.memory = memory
        self.baseline = 0
        self._launch()

    def _launch(self) -> None:
        child = start_child("covidviz.io.decode_worker", str(self.memory))
        self._proc, self._outbox, self._inbox = child.process, child.outbox, child.inbox
        self._ready = False

    def wait_ready(self) -> None:
        if self._ready:
            return
        if not self._inbox.poll(START_SECONDS):
            raise RuntimeError("the image decoder process did not start")
        _, pid = self._inbox.recv()
        self._ready = True
        self.baseline = address_space(pid)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def decode(self, data: bytes, filename: str) -> Xray:
        """The :class:`Xray` of ``data``, or :class:`XrayInputError` for a file that is refused, overruns its
        time or memory, or stops the decoder."""
        self.wait_ready()
        budget = _Budget(self._proc.pid, self.seconds)
        carrier = _shared_copy(data) if len(data) > PIPE_BYTES else None
        try:
            if carrier is None:
                self._outbox.send(("bytes", data, filename))
            else:
                self._outbox.send(("shared", carrier.name, len(data), filename))
            reply = self._reply(budget)
            if carrier is not None:
                _remove(carrier)
                carrier = None
            if reply[0] == "ok":
                return self._receive(reply, budget)
        except _Overrun as overrun:
            self.restart()
            raise XrayInputError(str(overrun)) from None
        except (EOFError, OSError):
            code = self._proc.wait(5)
            self.restart()
            raise XrayInputError(f"The image decoder stopped on this file (exit status {code}): the file is "
                                 "malformed.") from None
        except BaseException:  # interrupted mid-exchange: the next caller must not read this one's answer
            self.restart()
            raise
        finally:
            if carrier is not None:
                _remove(carrier)
        if reply[0] == "memory":
            self.restart()  # whatever it kept after a MemoryError, a fresh process serves the next file
            raise XrayInputError(f"This file needs more than {self.memory / 2**30:.0f} GB of memory to read; "
                                 "a radiograph of any accepted size needs far less, so the file is malformed.")
        self._retire_if_bloated()
        if reply[0] == "failed":
            raise XrayInputError(f"The file could not be read ({reply[1]}).")
        raise XrayInputError(reply[1])

    def _reply(self, budget: _Budget) -> tuple:
        self._wait(budget)
        return self._inbox.recv()

    def _wait(self, budget: _Budget) -> None:
        """Return once the worker has answered; :class:`_Overrun` once it has spent its budget first."""
        while not self._inbox.poll(min(POLL_SECONDS, budget.seconds)):
            budget.check()

    def _receive(self, reply: tuple, budget: _Budget) -> Xray:
        _, shape, info, warnings, colour = reply
        nbytes = int(np.prod(shape)) * 4
        try:
            block = _SharedFile(max(nbytes, 1))
        except OSError:  # no room in /dev/shm: the pipe is slower but always there
            block = None
        if block is None:
            self._outbox.send(("pipe",))
            pixels = np.empty(shape, np.float32)
            self._wait(budget)
            self._inbox.recv_bytes_into(memoryview(pixels).cast("B"))
        else:
            try:
                self._outbox.send(("shared", block.name))
                self._reply(budget)
                pixels = block.array(shape)
            finally:
                block.remove()
        self._retire_if_bloated()
        return Xray(pixels=pixels, info=info, warnings=tuple(warnings), colourfulness=colour)

    def _retire_if_bloated(self) -> None:
        """Replace a worker that kept most of its memory limit (a big decode can leave glibc holding it)."""
        if address_space(self._proc.pid) - self.baseline > RETIRE_SHARE * self.memory:
            self.restart()

    def restart(self) -> None:
        self.close()
        self._launch()

    def close(self) -> None:
        self._proc.kill()
        self._proc.wait()
        self._inbox.close()
        self._outbox.close()


class _SharedFile:
    """A file in /dev/shm that the worker fills with the pixels; the array handed back maps it directly (no
    copy), its name is removed at once, and the memory goes when the array does."""

    def __init__(self, size: int) -> None:
        self.name = f"covidviz-{os.getpid()}-{uuid.uuid4().hex}"
        self._fd = os.open(f"/dev/shm/{self.name}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        self.size = size
        try:
            os.ftruncate(self._fd, size)
        except OSError:
            self.remove()
            raise

    def array(self, shape: tuple[int, ...]) -> np.ndarray:
        mapped = mmap.mmap(self._fd, self.size)
        return np.frombuffer(mapped, np.float32, count=int(np.prod(shape))).reshape(shape)

    def remove(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            os.unlink(f"/dev/shm/{self.name}")


def _shared_copy(data: bytes) -> SharedMemory | None:
    """The file in a shared-memory block (a large file through a 64 KB pipe costs hundreds of context switches
    on a busy machine), or None where /dev/shm has no room."""
    try:
        block = SharedMemory(create=True, size=len(data))
    except OSError:
        return None
    block.buf[:len(data)] = data
    return block


def _remove(block: SharedMemory) -> None:
    block.close()
    block.unlink()


class _Overrun(Exception):
    """The worker did not answer within its budget; ``str()`` is the refusal its sender reads."""


class _Budget:
    """What one decode may spend: ``seconds`` of the worker's processor time, and ``WALL_FACTOR`` times that
    on the clock. Where /proc cannot tell processor time, the clock alone counts, at ``seconds``."""

    def __init__(self, pid: int, seconds: float) -> None:
        self.pid, self.seconds = pid, seconds
        self.began = time.monotonic()
        self.cpu_began = cpu_seconds(pid)
        self.wall = seconds if self.cpu_began is None else seconds * WALL_FACTOR

    def check(self) -> None:
        now = cpu_seconds(self.pid)
        used = None if self.cpu_began is None or now is None else now - self.cpu_began
        if used is not None and used > self.seconds:
            raise _Overrun(f"This file took longer than {self.seconds:.0f} s of processor time to read and was "
                           f"stopped; {_SIZES_READ_FAST}, so the file is malformed.")
        if time.monotonic() - self.began > self.wall:
            if used is None:
                raise _Overrun(f"This file took longer than {self.wall:.0f} s to read and was stopped; "
                               f"{_SIZES_READ_FAST}, so the file is malformed.")
            raise _Overrun(f"This file took longer than {self.wall:.0f} s to read, having used {used:.1f} s of "
                           "processor time, and was stopped: the decoder was stuck on it, or the server is "
                           f"overloaded ({_SIZES_READ_FAST}).")


class DecodePool:
    """Up to ``workers`` :class:`DecodeWorker`, started as callers need them: one serial caller (``predict``,
    a batch task) keeps one process, concurrent sessions get more. A caller finding all of them busy waits
    for one, which answers within its time limit, so the wait is bounded too."""

    def __init__(self, workers: int = DECODE_WORKERS, seconds: float = DECODE_SECONDS,
                 memory: int = DECODE_MEMORY, start: int = 1) -> None:
        if workers < 1:
            raise ValueError("a decode pool needs at least one worker")
        self.workers, self.seconds, self.memory = workers, seconds, memory
        self._idle: queue.SimpleQueue[DecodeWorker] = queue.SimpleQueue()
        self._started: list[DecodeWorker] = []
        self._lock = threading.Lock()
        for worker in [self._new() for _ in range(min(start, workers))]:  # all launched, then all awaited
            worker.wait_ready()
            self._idle.put(worker)

    def _new(self) -> DecodeWorker:
        worker = DecodeWorker(self.seconds, self.memory)
        self._started.append(worker)
        return worker

    def _take(self) -> DecodeWorker:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            grow = len(self._started) < self.workers
            worker = self._new() if grow else None
        return worker if worker is not None else self._idle.get()

    def decode(self, data: bytes, filename: str = "") -> Xray:
        worker = self._take()
        try:
            return worker.decode(data, filename)
        finally:
            self._idle.put(worker)

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids (they change as overrunning workers are replaced)."""
        return [worker.pid for worker in self._started]

    def close(self) -> None:
        for worker in self._started:
            worker.close()


_pool: DecodePool | None = None
_pool_lock = threading.Lock()


def decode_pool() -> DecodePool:
    """The process-wide pool, started on first use (the dashboard starts it with the server)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = DecodePool()
        return _pool


def read_untrusted(data: bytes, filename: str = "", pool: Callable[[], DecodePool] = decode_pool) -> Xray:
    """:func:`~covidviz.io.loading.load_xray` in an isolated worker: the same checks, the same messages, plus
    a refusal for a file that overruns the time or memory limit or stops the decoder."""
    if not data:  # answered here: no process needed to say that nothing was sent
        raise XrayInputError("The file is empty (0 bytes).")
    return pool().decode(data, filename)


def read_untrusted_file(path: str | Path) -> Xray:
    """Read a file from disk and decode it as :func:`read_untrusted` does."""
    return read_untrusted(file_bytes(path), Path(path).name)

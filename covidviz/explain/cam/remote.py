"""pytorch-grad-cam's methods in a process of their own, for a server that does not load torch.

The library methods need PyTorch's autograd, and the library imports SciPy, scikit-learn and matplotlib
besides: about 620 MB (torch 194, torchvision 83, the library and what it imports 181, the model 61, the first
map 104, measured here). A dashboard that reads with ONNX Runtime holds none of that until someone asks for a
library method; then this worker (:mod:`covidviz.explain.cam.worker`) starts, loads the verified model once and
draws every library map the server is asked for, one at a time. It stops after ``COVIDVIZ_CAM_IDLE_SECONDS``
(300) without a request, so its memory goes back to the system, and is started again on the next request (a
few seconds, which that request's user waits). A request interrupted mid-way (its user left the page) stops
the worker, so the next request never reads the previous one's answer.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from covidviz.explain.cam.library import Progress
from covidviz.io.child_process import start_child

log = logging.getLogger(__name__)

IDLE_SECONDS = float(os.environ.get("COVIDVIZ_CAM_IDLE_SECONDS", "300"))
START_SECONDS = 180.0  # importing torch and the library and verifying the model: seconds, never minutes


class CamWorker:
    """The library heatmap methods for the model in ``weights_dir``, drawn in a worker process started on first
    use and stopped after ``idle`` seconds without a request. Thread-safe: requests take turns."""

    def __init__(self, weights_dir: str | Path, idle: float = IDLE_SECONDS) -> None:
        self.weights_dir = Path(weights_dir)
        self.idle = idle
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._outbox: Connection | None = None
        self._inbox: Connection | None = None
        self._last_used = time.monotonic()
        threading.Thread(target=self._retire_when_idle, daemon=True, name="cam-worker-idle").start()

    @property
    def pid(self) -> int | None:
        """The worker's process id while it runs; None when it is not started (or was stopped)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def cam(self, method: str, batch: np.ndarray, class_index: int, progress: Progress | None = None) -> np.ndarray:
        """One map (H x W in [0, 1]) for ``class_index`` of a 1-image standardised batch: what
        :func:`covidviz.explain.cam.library.library_cam` draws, drawn in the worker."""
        with self._lock:
            self._start()
            try:
                self._outbox.send((method, np.ascontiguousarray(batch, dtype=np.float32), class_index,
                                   progress is not None))
                reply = self._inbox.recv()
                while reply[0] == "progress":
                    progress(reply[1], reply[2])
                    reply = self._inbox.recv()
            except (EOFError, OSError):
                self._stop()
                raise RuntimeError("the heatmap worker stopped; the next request starts a new one") from None
            except BaseException:  # interrupted mid-exchange: the next request must not read this one's answer
                self._stop()
                raise
            finally:
                self._last_used = time.monotonic()
        if reply[0] == "map":
            return reply[1]
        if reply[1] == "ValueError":
            raise ValueError(reply[2])
        raise RuntimeError(f"the heatmap worker could not draw this map ({reply[1]})")

    def stop(self) -> None:
        with self._lock:
            self._stop()

    def _start(self) -> None:
        if self.pid is not None:
            return
        child = start_child("covidviz.explain.cam.worker", str(self.weights_dir))
        self._proc, self._outbox, self._inbox = child.process, child.outbox, child.inbox
        if not self._inbox.poll(START_SECONDS):
            self._stop()
            raise RuntimeError("the heatmap worker did not start")
        try:
            self._inbox.recv()  # ("ready", pid): the model is loaded and verified
        except EOFError:
            code = self._stop()
            raise RuntimeError(f"the heatmap worker stopped while loading the model (exit status {code})") from None
        log.info("heatmap worker started (pid %d)", self._proc.pid)

    def _stop(self) -> int | None:
        if self._proc is None:
            return None
        proc, self._proc = self._proc, None
        for connection in (self._outbox, self._inbox):
            connection.close()
        self._outbox = self._inbox = None
        if proc.poll() is None:
            proc.kill()
        return proc.wait(10)

    def _retire_when_idle(self) -> None:
        while True:
            time.sleep(min(30.0, max(self.idle / 4, 0.05)))
            if self._proc is None or time.monotonic() - self._last_used < self.idle:
                continue
            if self._lock.acquire(blocking=False):
                try:
                    if self._proc is not None and time.monotonic() - self._last_used >= self.idle:
                        self._stop()
                        log.info("heatmap worker stopped after %.0f s without a request", self.idle)
                finally:
                    self._lock.release()

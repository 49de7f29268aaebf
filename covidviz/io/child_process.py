"""A covidviz module started as a program of its own, talking to this process over two pipes.

Used for the work kept out of the server's process: decoding untrusted files (:mod:`covidviz.io.isolation`)
and drawing the library heatmap methods (:mod:`covidviz.explain.cam.remote`). A program of its own, not a
multiprocessing child, so it never re-imports whatever script the parent was started as (Streamlit's).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection

from covidviz.paths import ROOT


@dataclass(frozen=True)
class Child:
    """The process, the pipe this side writes requests to, and the one it reads answers from
    (:class:`multiprocessing.connection.Connection` framing)."""

    process: subprocess.Popen
    outbox: Connection
    inbox: Connection


def start_child(module: str, *args: str) -> Child:
    """``python -m MODULE IN_FD OUT_FD ARGS...`` with this checkout importable; the module reads its requests
    from IN_FD and writes its answers to OUT_FD."""
    to_child, from_parent = os.pipe()
    to_parent, from_child = os.pipe()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", module, str(to_child), str(from_child), *args],
                               pass_fds=(to_child, from_child), env=env, stdin=subprocess.DEVNULL, close_fds=True)
    os.close(to_child)
    os.close(from_child)
    return Child(process, Connection(from_parent, readable=False), Connection(to_parent, writable=False))

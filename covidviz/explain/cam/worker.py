"""The child side of :mod:`covidviz.explain.cam.remote`: ``python -m covidviz.explain.cam.worker IN_FD OUT_FD WEIGHTS``.

Loads the verified PyTorch model once, then answers one request at a time over two pipes
(:class:`multiprocessing.connection.Connection` framing): ``(method, batch, class_index, report_progress)`` in;
any number of ``("progress", done, total)``, then ``("map", H x W float32)`` or ``("error", type name,
message)`` out. It runs as its own program, not a multiprocessing child, so it never re-imports whatever
script the parent was started as (Streamlit's).
"""

from __future__ import annotations

import os
import sys
from multiprocessing.connection import Connection


def serve(inbox: Connection, outbox: Connection, weights_dir: str) -> None:
    import torch

    from covidviz.explain.cam.library import library_cam
    from covidviz.model.weights import load_weights
    model, _ = load_weights(weights_dir)
    model = model.to(memory_format=torch.channels_last)
    outbox.send(("ready", os.getpid()))
    while True:
        try:
            method, batch, class_index, report = inbox.recv()
        except EOFError:
            return  # the parent closed its end or died
        progress = (lambda done, total: outbox.send(("progress", done, total))) if report else None
        try:
            outbox.send(("map", library_cam(model, method, batch, class_index, progress)))
        except ValueError as exc:
            outbox.send(("error", "ValueError", str(exc)))
        except Exception as exc:  # noqa: BLE001  (reported to the parent, which decides; the worker serves on)
            outbox.send(("error", exc.__class__.__name__, ""))


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False), sys.argv[3])

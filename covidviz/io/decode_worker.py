"""The child side of :mod:`covidviz.io.isolation`: ``python -m covidviz.io.decode_worker IN_FD OUT_FD``.

One request at a time over two pipes (:class:`multiprocessing.connection.Connection` framing):
``("bytes", data, filename)`` in, or ``("shared", block name, size, filename)`` for a large file the parent
put in shared memory; then ``("ok", shape, info, warnings, colourfulness)`` followed by the pixels (into the shared
memory block the parent names, or as raw bytes down the pipe), or ``("rejected", problem)``, ``("memory",)``
or ``("failed", exception type)``. It runs as its own program, not a multiprocessing child, so it never
re-imports whatever script the parent was started as.
"""

from __future__ import annotations

import mmap
import os
import resource
import sys
import warnings
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from covidviz.errors import XrayInputError
from covidviz.io.loading import load_xray


def address_space(pid: int | str = "self") -> int:
    """A process's virtual memory size in bytes (what RLIMIT_AS limits); 0 where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int | str = "self") -> float | None:
    """A process's processor time so far (user and system, in seconds); None where /proc cannot tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def caused_by_memory(exc: BaseException | None) -> bool:
    """Whether a MemoryError lies anywhere in the exception's chain (a reader may have wrapped it)."""
    for _ in range(20):
        if exc is None:
            return False
        if isinstance(exc, MemoryError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def answer(data: bytes, filename: str) -> tuple[tuple, np.ndarray | None]:
    """The reply to one request, and the pixels to send after it when the file loaded."""
    try:
        xray = load_xray(data, filename)
    except XrayInputError as exc:
        return (("memory",) if caused_by_memory(exc) else ("rejected", exc.problem)), None
    except MemoryError:
        return ("memory",), None
    except Exception as exc:  # noqa: BLE001 (a reader bug must still reach the caller as a refusal)
        return ("failed", type(exc).__name__), None
    pixels = np.ascontiguousarray(xray.pixels, dtype=np.float32)
    return ("ok", pixels.shape, xray.info, xray.warnings, xray.colourfulness), pixels


def read_shared(name: str, size: int) -> bytes:
    """The file's bytes from the parent's shared-memory block (see :func:`copy_into_shared` for why mmap)."""
    fd = os.open(f"/dev/shm/{name}", os.O_RDONLY)
    try:
        with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mapped:
            return mapped[:size]
    finally:
        os.close(fd)


def copy_into_shared(pixels: np.ndarray, name: str) -> None:
    """Write the pixels into the parent's shared-memory block. Mapped directly rather than through
    ``SharedMemory``, which in this Python registers the block with a resource tracker of this process's own
    that would remove it when this process ends."""
    fd = os.open(f"/dev/shm/{name}", os.O_RDWR)
    try:
        with mmap.mmap(fd, pixels.nbytes, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE) as mapped:  # one fault, not one a page
            target = np.ndarray(pixels.shape, np.float32, buffer=mapped)
            target[...] = pixels
            del target
    finally:
        os.close(fd)


def warm_up() -> None:
    """Decode one small PNG and one detector-sized DICOM, and load the compressed-DICOM decoders, so that the
    first real file does not pay for the lazy imports and the first large allocations (measured here: a 7 MB
    DICOM read first took 130-190 ms, read again 90 ms)."""
    import importlib
    import io

    from PIL import Image

    for decoder in ("openjpeg", "libjpeg", "pydicom.pixels.decoders"):
        try:
            importlib.import_module(decoder)
        except ImportError:  # an optional decoder: its transfer syntaxes are refused with a message
            pass

    buffer = io.BytesIO()
    Image.new("L", (64, 64)).save(buffer, "PNG")
    load_xray(buffer.getvalue(), "warm-up.png")
    load_xray(detector_sized_dicom(), "warm-up.dcm")


def detector_sized_dicom(side: int = 2048) -> bytes:
    """An uncompressed 12-bit DICOM radiograph of a gradient, ``side`` pixels square (8 MB at 2048)."""
    import io

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PhotometricInterpretation, ds.SamplesPerPixel = "DX", "MONOCHROME2", 1
    ds.Rows = ds.Columns = side
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(side * side, dtype=np.uint32) % 4096).astype(np.uint16).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def serve(inbox: Connection, outbox: Connection, memory_limit: int) -> None:
    # On top of what the started worker holds: what a started interpreter maps varies with its environment,
    # and the limit is for the decode.
    warm_up()
    limit = address_space() + memory_limit
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    outbox.send(("ready", os.getpid()))
    while True:
        try:
            request = inbox.recv()
            data, filename = (read_shared(request[1], request[2]), request[3]) if request[0] == "shared" \
                else (request[1], request[2])
        except (EOFError, OSError):  # the parent has gone
            return
        except MemoryError:  # the file alone overruns the limit; the pipe may be mid-message, so stop here
            outbox.send(("memory",))
            return
        reply, pixels = answer(data, filename)
        del data
        outbox.send(reply)
        if pixels is None:
            continue
        how = inbox.recv()
        if how[0] == "shared":
            copy_into_shared(pixels, how[1])
            outbox.send(("copied",))
        else:
            outbox.send_bytes(memoryview(pixels).cast("B"))
        del pixels


def main(argv: list[str]) -> None:
    warnings.simplefilter("ignore")  # Pillow and pydicom warn about every oddity of a broken file
    inbox = Connection(int(argv[0]), writable=False)
    outbox = Connection(int(argv[1]), readable=False)
    os.dup2(2, 1)  # a library that prints must not write into anything the parent reads
    serve(inbox, outbox, int(argv[2]))


if __name__ == "__main__":
    main(sys.argv[1:])

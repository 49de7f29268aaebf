"""Where archive scoring's inputs come from (a folder tree, a text file listing images, ``pacs:QUERY``) and the
Ray task that reads and decodes them (:func:`decode_batch`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa


class BatchSourceError(ValueError):
    """The SOURCE argument names nothing that can be scored."""


class ArchiveSource(Protocol):
    """Where the inputs come from. ``read`` runs inside Ray tasks, so a source must pickle.

    Keys identify inputs in the results (column ``file``) and for resuming. The PACS source
    (``covidviz.interop.archive_source(query)``) lists instance keys and fetches each by WADO-RS."""

    description: str

    def keys(self) -> list[str]: ...

    def read(self, key: str) -> bytes: ...


@dataclass(frozen=True)
class FileSource:
    """Files on a file system every Ray node can see (local disk for a local job, a shared mount on a cluster)."""

    paths: tuple[str, ...]
    description: str

    def keys(self) -> list[str]:
        return list(self.paths)

    def read(self, key: str) -> bytes:
        return Path(key).read_bytes()


def folder_source(folder: Path) -> FileSource:
    """Every PNG, JPEG or DICOM file under ``folder``, in the order ``predict`` walks it."""
    from covidviz.tools.predict import expand_paths
    paths = tuple(str(p) for p in expand_paths([str(folder)]))
    return FileSource(paths, f"{len(paths)} image files under {folder}")


def list_source(listing: Path) -> FileSource:
    """One path per line (blank lines and # comments skipped); relative paths are relative to the list's folder."""
    paths = []
    for line in listing.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            path = Path(line)
            paths.append(str(path if path.is_absolute() else listing.parent / path))
    return FileSource(tuple(dict.fromkeys(paths)), f"{len(paths)} files listed in {listing}")


def pacs_source(query: str) -> ArchiveSource:
    """The frontal chest radiographs a DICOMweb query finds (:func:`covidviz.interop.archive_source`; keys
    ``dicomweb:<study>/<series>/<instance>``, ``read``: WADO-RS retrieve of the instance). They are listed now,
    so a bad query, a missing configuration or a server that cannot be reached stops the job before Ray starts."""
    try:
        from covidviz.interop import PacsError, archive_source
    except ImportError as exc:
        raise BatchSourceError(f"PACS sources need covidviz.interop.archive, which cannot be imported "
                               f"({exc})") from None
    try:
        source = archive_source(query)
        source.keys()  # listed once and kept: run_batch's keys() call gets the same list
    except (PacsError, ValueError) as exc:
        raise BatchSourceError(f"PACS source: {exc}") from None
    return source


def open_source(source: str) -> ArchiveSource:
    """A folder tree, a text file listing images, or ``pacs:QUERY``."""
    if source.startswith("pacs:"):
        return pacs_source(source[len("pacs:"):])
    path = Path(source)
    if path.is_dir():
        return folder_source(path)
    if path.is_file():
        if path.suffix.lower() in {".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".dic"}:
            return FileSource((str(path),), f"1 file ({path.name})")
        return list_source(path)
    raise BatchSourceError(f"{source} does not exist: SOURCE is a folder of X-rays, a text file listing one image "
                           "path per line, or pacs:QUERY")


def read_error(exc: Exception) -> str:
    """The same message ``predict`` gives for a file it cannot read."""
    if isinstance(exc, OSError):
        return f"The file cannot be read ({exc.strerror})."
    return f"The input could not be fetched ({exc.__class__.__name__}: {exc})."


DECODED_SCHEMA = pa.schema([("key", pa.string()), ("sha256", pa.string()), ("pixels", pa.large_binary()),
                            ("height", pa.int64()), ("width", pa.int64()), ("info", pa.string()),
                            ("warnings", pa.string()), ("colourfulness", pa.float64()), ("error", pa.string())])


def decode_batch(batch: dict[str, np.ndarray], source: ArchiveSource) -> pa.Table:
    """Ray task: read and decode inputs. Pixels travel as raw float32 bytes plus their shape, so a rejected
    input (no pixels) and an accepted one fit the same columns."""
    import hashlib

    from covidviz.errors import XrayInputError
    from covidviz.io.isolation import read_untrusted
    out: dict[str, list] = {k: [] for k in ("key", "sha256", "pixels", "height", "width", "info", "warnings",
                                             "colourfulness", "error")}
    for key in batch["key"]:
        key = str(key)
        pixels, shape, info, warnings, colour, error, sha = None, (0, 0), "{}", "[]", 0.0, None, None
        try:
            data = source.read(key)
            sha = hashlib.sha256(data).hexdigest()
            xray = read_untrusted(data, Path(key).name)
            pixels, shape = np.ascontiguousarray(xray.pixels, dtype=np.float32).tobytes(), xray.pixels.shape
            info, warnings, colour = json.dumps(xray.info), json.dumps(list(xray.warnings)), xray.colourfulness
        except XrayInputError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001  (one odd file never stops an archive job)
            error = read_error(exc) if sha is None else f"The file could not be decoded ({exc.__class__.__name__}: {exc})."
        for name, value in (("key", key), ("sha256", sha), ("pixels", pixels), ("height", shape[0]),
                            ("width", shape[1]), ("info", info), ("warnings", warnings), ("colourfulness", colour),
                            ("error", error)):
            out[name].append(value)
    return pa.table(out, schema=DECODED_SCHEMA)

"""Shipped networks on disk: fp16 safetensors beside a JSON sidecar that records the file's sha256.

One writer and one verifying reader for every network (the classifier, the lung segmenter), at the bottom
of the package so that no layer has to import another's to load its weights. safetensors holds tensors
only, so loading cannot execute code the way a pickle can.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from covidviz.errors import WeightsError

if TYPE_CHECKING:  # torch loads only when weights do: pages that read a sidecar stay light
    import torch

SIDECAR_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"


def read_sidecar(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / SIDECAR_FILE
    if not path.is_file():
        raise WeightsError(f"No model sidecar at {path}. Train a model or restore weights/ from the repository.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise WeightsError(f"The sidecar {path} is not valid JSON ({exc}).") from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_record_path(path: str | Path) -> Path:
    """Where the sha256 of a file other than a network's weights is recorded: ``<name>.json`` beside it."""
    path = Path(path)
    return path.with_name(path.stem + ".json")


def record_sha256(path: str | Path) -> Path:
    """Record the sha256 of a just-written file (the OOD guard, for one) beside it, so that
    :func:`check_sha256` can refuse it once altered: the same promise the weights' sidecar gives."""
    path = Path(path)
    record = hash_record_path(path)
    record.write_text(json.dumps({"file": path.name, "sha256": sha256_of(path)}, indent=2) + "\n")
    return record


def check_sha256(path: str | Path) -> None:
    """:class:`WeightsError` unless ``path`` has a hash record (:func:`record_sha256`) and still matches it."""
    path = Path(path)
    record = hash_record_path(path)
    try:
        expected = json.loads(record.read_text())["sha256"]
    except FileNotFoundError:
        raise WeightsError(f"{path.name} has no hash record ({record.name}) to verify it by: run "
                           "`python -m covidviz evaluate` to rebuild it, or restore weights/ from the "
                           "repository.") from None
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise WeightsError(f"The hash record {record} cannot be read ({exc.__class__.__name__}).") from None
    actual = sha256_of(path)
    if actual != expected:
        raise WeightsError(f"The file {path} is corrupt or was replaced: sha256 {actual[:12]}… does not match "
                           f"the {record.name} record's {str(expected)[:12]}….")


def save_verified(state: dict[str, torch.Tensor], directory: str | Path, sidecar: dict[str, Any],
                  architecture: str) -> Path:
    """Write a state dict as fp16 safetensors and its sidecar carrying the file's sha256.

    One writer for every shipped network (classifier, lung segmenter), so each is verified the same way."""
    from safetensors.torch import save_file
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v).contiguous().cpu() for k, v in state.items()}
    path = directory / WEIGHTS_FILE
    save_file(state, str(path), metadata={"architecture": architecture})
    sidecar = {**sidecar, "architecture": architecture, "weights_file": WEIGHTS_FILE, "weights_sha256": sha256_of(path)}
    (directory / SIDECAR_FILE).write_text(json.dumps(sidecar, indent=2) + "\n")
    return path


def verified_file(directory: str | Path, architecture: str) -> tuple[Path, dict[str, Any]]:
    """The weights file of ``directory`` and its sidecar, once the sidecar names ``architecture`` and the
    file's sha256 is the one the sidecar records; :class:`WeightsError` otherwise. Reads no tensor, so a
    server that serves an export of these weights verifies them without torch."""
    directory = Path(directory)
    sidecar = read_sidecar(directory)
    if sidecar.get("architecture") != architecture:
        raise WeightsError(f"The sidecar in {directory} describes {sidecar.get('architecture')}; "
                           f"expected {architecture}.")
    path = directory / sidecar.get("weights_file", WEIGHTS_FILE)
    if not path.is_file():
        raise WeightsError(f"The weights file {path} is missing.")
    actual = sha256_of(path)
    if actual != sidecar.get("weights_sha256"):
        raise WeightsError(f"The weights file {path} is corrupt or was replaced: sha256 {actual[:12]}… "
                           f"does not match the sidecar's {str(sidecar.get('weights_sha256'))[:12]}….")
    return path, sidecar


def load_verified(directory: str | Path, architecture: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The fp32 state dict and sidecar of ``directory``, verified by :func:`verified_file`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    path, sidecar = verified_file(directory, architecture)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"The weights file {path} cannot be read ({exc}).") from None
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, sidecar

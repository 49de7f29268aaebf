"""A site's calibration profile: the temperature fitted on one hospital's readers' verdicts.

The profile is a small JSON file outside weights/ (:func:`covidviz.paths.site_profile_path`). It names the
model it was fitted for (weights sha256) and the verdicts it was fitted on (count and date range), and it
carries the sha256 of its own content, checked on every load as the weights' sidecar is: an altered
profile is refused, never silently applied. Every version written is kept in ``<name>.history/`` beside
it, so a profile can be reverted to the one before, or to the shipped calibration.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from covidviz.errors import WeightsError
from covidviz.paths import site_profile_path

log = logging.getLogger("covidviz.model")
CALIBRATION_KEY = "calibration_in_use"  # in a Predictor's sidecar copy: what the audit log records
SHIPPED_NOTE = "shipped calibration (temperature fitted on the validation split)"


@dataclass(frozen=True)
class Calibration:
    """The calibration a predictor applies, and how every interface names it."""

    temperature: float
    profile_version: int | None = None  # None: the shipped calibration
    profile_sha256: str | None = None
    n_verdicts: int | None = None
    fitted_at: str | None = None  # date the profile was written (UTC)

    @property
    def note(self) -> str:
        """The words Diagnose, predict, batch, the SR and the audit log use."""
        if self.profile_version is None:
            return SHIPPED_NOTE
        return (f"calibrated for this site on {self.n_verdicts} verdicts, {self.fitted_at} "
                f"(site profile v{self.profile_version}, {self.profile_sha256[:12]})")

    @property
    def label(self) -> str:
        """Short form for the audit log's ``calibration`` column."""
        if self.profile_version is None:
            return "shipped"
        return f"site v{self.profile_version} {self.profile_sha256[:12]} n={self.n_verdicts} {self.fitted_at}"


def content_sha256(profile: dict[str, Any]) -> str:
    """sha256 of the profile's content (every field but ``sha256``), canonical JSON."""
    body = {k: v for k, v in profile.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def history_dir(path: Path | None = None) -> Path:
    path = Path(path or site_profile_path())
    return path.with_name(path.name + ".history")


def read_profile(path: Path | None = None) -> dict[str, Any] | None:
    """The active profile, verified; None when there is none. :class:`WeightsError` when it was altered."""
    path = Path(path or site_profile_path())
    if not path.is_file():
        return None
    try:
        profile = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"The site profile {path} cannot be read ({exc.__class__.__name__}).") from None
    if not isinstance(profile, dict) or profile.get("sha256") != content_sha256(profile):
        raise WeightsError(f"The site profile {path} is corrupt or was edited: its content no longer matches "
                           "its recorded sha256. Revert it (`python -m covidviz site profile revert`) or "
                           "calibrate again.")
    return profile


def write_profile(fields: dict[str, Any], path: Path | None = None) -> dict[str, Any]:
    """Write a new profile version (the next number after every version kept) and make it active."""
    path = Path(path or site_profile_path())
    history = history_dir(path)
    history.mkdir(parents=True, exist_ok=True)
    version = 1 + max((int(p.stem[1:]) for p in history.glob("v*.json") if p.stem[1:].isdigit()), default=0)
    profile = {**fields, "version": version}
    profile["sha256"] = content_sha256(profile)
    text = json.dumps(profile, indent=2) + "\n"
    (history / f"v{version}.json").write_text(text)
    path.write_text(text)
    return profile


def revert_profile(path: Path | None = None) -> dict[str, Any] | None:
    """Make the version before the active one active again; with none before it, remove the active profile
    (the shipped calibration applies). The history is kept. Returns the profile now active, or None."""
    path = Path(path or site_profile_path())
    current = read_profile(path)
    if current is None:
        return None
    earlier = sorted((int(p.stem[1:]) for p in history_dir(path).glob("v*.json")
                      if p.stem[1:].isdigit() and int(p.stem[1:]) < current["version"]))
    if not earlier:
        path.unlink()
        return None
    text = (history_dir(path) / f"v{earlier[-1]}.json").read_text()
    path.write_text(text)
    return read_profile(path)


def calibration_for(sidecar: dict[str, Any], path: Path | None = None) -> Calibration:
    """What a model applies: the site profile when one exists for exactly these weights, else the shipped
    temperature. A profile for other weights is ignored with a log line (it was fitted to another model's
    logits); an altered one raises."""
    shipped = Calibration(temperature=float(sidecar.get("temperature", 1.0)))
    profile = read_profile(path)
    if profile is None:
        return shipped
    if profile.get("model_sha256") != sidecar.get("weights_sha256"):
        log.info("site profile v%s is for model %s, not %s: the shipped calibration applies",
                 profile.get("version"), str(profile.get("model_sha256"))[:12],
                 str(sidecar.get("weights_sha256"))[:12])
        return shipped
    return Calibration(temperature=float(profile["temperature"]), profile_version=int(profile["version"]),
                       profile_sha256=profile["sha256"], n_verdicts=int(profile["verdicts"]["n"]),
                       fitted_at=str(profile["created_at"])[:10])


def calibrated_sidecar(sidecar: dict[str, Any], calibration: Calibration | None = None) -> dict[str, Any]:
    """A copy of a model's sidecar naming the calibration in use (``CALIBRATION_KEY``): what every audit
    record is built from, so each names it (covidviz.audit.events.calibration_fields)."""
    calibration = calibration or calibration_for(sidecar)
    return {**sidecar, CALIBRATION_KEY: {"label": calibration.label, "temperature": calibration.temperature}}

"""How the film was made, imitated: seeded transforms of a grayscale radiograph (issue 20, part 2).

The model should answer the same whatever the detector, the vendor's processing, the scanner or the archive did
to a film; these transforms build such changes from a film we have, so that the rate at which the predicted class
flips under each can be measured (``python -m covidviz measure-shift``) today and, with the same code, after a
retraining that uses them as augmentations. Each takes a 2-D float image in [0, 1] (bright = dense, any size), a
``numpy`` random generator (all randomness comes from it: same generator state, same output) and a ``strength``
(1.0: the strength measured; 0 leaves the image as it is for the continuous ones), and returns a float32 image of
the same shape in [0, 1]. Sizes (blur radii, borders, text) scale with the image, so a 256 px film and a
3000 px original get the same look. Vectorised numpy and OpenCV only: fast enough for a training loader.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

REFERENCE_SIDE = 256  # the collection's size: pixel sizes below are for it and scale with the shorter side


def check_gray(gray: np.ndarray) -> np.ndarray:
    """The image as float32, or a ValueError saying why it is not a 2-D float image in [0, 1]."""
    if not isinstance(gray, np.ndarray) or gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got {getattr(gray, 'shape', type(gray).__name__)}")
    if not np.issubdtype(gray.dtype, np.floating):
        raise ValueError(f"expected a float image in [0, 1], got dtype {gray.dtype}")
    if min(gray.shape) < 8:
        raise ValueError(f"image too small to transform: {gray.shape}")
    if not np.isfinite(gray).all() or gray.min() < 0.0 or gray.max() > 1.0:
        raise ValueError("expected a float image in [0, 1] (finite values only)")
    return gray.astype(np.float32, copy=False)


def _check_strength(strength: float) -> float:
    if not np.isfinite(strength) or strength < 0:
        raise ValueError(f"strength must be a finite number >= 0, got {strength}")
    return float(strength)


def _scale(gray: np.ndarray) -> float:
    """Pixels of this image per pixel of a 256 px film."""
    return min(gray.shape) / REFERENCE_SIDE


def _finish(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _grain(shape: tuple[int, int], rng: np.random.Generator, sigma_px: float) -> np.ndarray:
    """Unit-variance noise clumped over ``sigma_px`` pixels (silver grains, scintillator blur)."""
    noise = rng.standard_normal(shape).astype(np.float32)
    if sigma_px > 0.3:
        noise = cv2.GaussianBlur(noise, (0, 0), sigma_px)
        noise /= max(float(noise.std()), 1e-6)
    return noise


def grain_noise(gray: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Film grain and detector noise: a low-dose portable film or an older CR plate. Quantum (Poisson-like)
    noise grows with the signal's square root; clumped grain and a flat electronic floor come on top."""
    gray, strength = check_gray(gray), _check_strength(strength)
    quantum = rng.uniform(0.03, 0.05) * strength
    floor = rng.uniform(0.008, 0.015) * strength
    grain = rng.uniform(0.015, 0.03) * strength
    noise = (quantum * np.sqrt(gray) * rng.standard_normal(gray.shape).astype(np.float32)
             + floor * rng.standard_normal(gray.shape).astype(np.float32)
             + grain * _grain(gray.shape, rng, 0.8 * _scale(gray)))
    return _finish(gray + noise)


def contrast_curve(gray: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """A different look-up table: vendors' non-linear contrast and gamma curves (a soft "lung" curve, a hard
    "bone" curve). Monotone, so it changes the histogram but never the order of two pixels."""
    gray, strength = check_gray(gray), _check_strength(strength)
    gamma = float(np.exp(rng.choice([-1.0, 1.0]) * rng.uniform(0.35, 0.6) * strength))
    slope = rng.uniform(4.0, 8.0) * strength  # an S-curve around the middle grey; ~0 keeps it linear
    centre = rng.uniform(0.4, 0.6)
    curved = gray ** gamma
    if slope < 1e-3:
        return _finish(curved)
    low, high = 1 / (1 + np.exp(slope * centre)), 1 / (1 + np.exp(-slope * (1 - centre)))
    s = 1 / (1 + np.exp(-slope * (curved - centre)))
    return _finish((s - low) / (high - low))


def edge_enhance(gray: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Unsharp masking as vendors apply it to CR and DR films: the image plus a multiple of itself minus a
    blurred copy, which sharpens edges and lines and leaves halos along the ribs, heart and diaphragm."""
    gray, strength = check_gray(gray), _check_strength(strength)
    sigma = rng.uniform(2.0, 5.0) * _scale(gray)
    amount = rng.uniform(1.0, 2.0) * strength
    blurred = cv2.GaussianBlur(gray, (0, 0), sigma)
    return _finish(gray + amount * (gray - blurred))


def low_resolution_jpeg(gray: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """A film that went through a small screenshot or an archive: downsampled (area average), scaled back up,
    and re-compressed as an 8-bit JPEG at low quality (blocking, lost fine detail)."""
    gray, strength = check_gray(gray), _check_strength(strength)
    h, w = gray.shape
    factor = 1.0 + rng.uniform(1.5, 3.0) * strength
    small = cv2.resize(gray, (max(8, round(w / factor)), max(8, round(h / factor))), interpolation=cv2.INTER_AREA)
    image = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    quality = int(np.clip(round(95 - rng.uniform(65, 80) * min(strength, 1.0)), 5, 95))
    ok, encoded = cv2.imencode(".jpg", np.round(_finish(image) * 255).astype(np.uint8),
                               [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV encodes any 2-D uint8 image
        raise ValueError("JPEG encoding failed")
    return cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0


CORNER_TEXT = ("R", "L", "AP", "PORTABLE", "SUPINE", "ERECT", "CR", "12:04")


def collimation_and_text(gray: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Collimation borders (the unexposed margin a tight collimator leaves, dark on a processed film, with a
    soft penumbra) and burnt-in annotation: a side marker and technologists' labels in the corners."""
    gray, strength = check_gray(gray), _check_strength(strength)
    h, w = gray.shape
    scale = _scale(gray)
    out = gray.copy()
    if strength > 0:
        widths = (rng.uniform(0.05, 0.12, 4) * min(strength, 2.0) * np.array([h, h, w, w])).astype(int)
        top, bottom, left, right = np.maximum(widths, 1)
        rows, cols = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
        soft = max(1.5 * scale, 0.5)
        inside = (_ramp(rows - top, soft) * _ramp(h - 1 - bottom - rows, soft)
                  * _ramp(cols - left, soft) * _ramp(w - 1 - right - cols, soft))
        dark = rng.uniform(0.02, 0.08)
        out = out * inside + (dark + 0.01 * rng.standard_normal((h, w)).astype(np.float32)) * (1 - inside)
    font_scale = 0.4 * scale
    thickness = max(1, round(scale))
    words = rng.choice(CORNER_TEXT, size=3, replace=False)
    corners = [(0.03, 0.09), (0.70, 0.09), (0.03, 0.96)]
    ink = np.zeros((h, w), np.uint8)  # OpenCV draws text on 8-bit images only: draw a coverage mask
    for word, (x, y) in zip(words, corners):
        cv2.putText(ink, str(word), (int(x * w), int(y * h)), cv2.FONT_HERSHEY_SIMPLEX, font_scale, 255,
                    thickness, cv2.LINE_AA)
    alpha = ink.astype(np.float32) / 255.0
    return _finish(out * (1 - alpha) + rng.uniform(0.9, 1.0) * alpha)


def _ramp(distance: np.ndarray, soft: float) -> np.ndarray:
    """0 outside, 1 inside, a linear penumbra ``soft`` pixels wide at the edge."""
    return np.clip(distance / soft + 0.5, 0.0, 1.0)


DIGITISED_PARTS = ("curve", "blur", "grain", "light", "edge")


def digitised_film(gray: np.ndarray, rng: np.random.Generator, strength: float = 1.0,
                   parts: tuple[str, ...] = DIGITISED_PARTS) -> np.ndarray:
    """A screen-film radiograph scanned on a film digitiser, the strong shift built here: the film's S-shaped
    characteristic curve with base fog (no true black or white), the scanner's blur, silver grain, uneven
    scanner light (vignetting and a gradient across the film) and a bright band of unexposed film along one
    edge. Normals digitised from film at an unseen hospital were the case the guard missed (issue 20).

    ``parts`` applies only some of these five (:data:`DIGITISED_PARTS`), to find which one moves a model; every
    random draw is made all the same, so a part looks exactly as it does inside the whole transform."""
    gray, strength = check_gray(gray), _check_strength(strength)
    unknown = set(parts) - set(DIGITISED_PARTS)
    if unknown:
        raise ValueError(f"unknown digitised-film part(s) {sorted(unknown)}: choose from {', '.join(DIGITISED_PARTS)}")
    h, w = gray.shape
    scale = _scale(gray)
    # characteristic (H&D) curve: an S-curve squeezed between base-plus-fog and the film's maximum density
    slope, centre = rng.uniform(5.0, 8.0), rng.uniform(0.45, 0.6)
    s = 1 / (1 + np.exp(-slope * (gray - centre)))
    fog, top = rng.uniform(0.08, 0.15) * strength, 1 - rng.uniform(0.05, 0.12) * strength
    mix = min(0.8 * strength, 1.0)  # how much of the curve replaces the film's own contrast
    film = (1 - mix) * gray + mix * (fog + (top - fog) * s) if "curve" in parts else gray
    blur = max(rng.uniform(0.8, 1.4) * scale * strength, 1e-3)
    if "blur" in parts:
        film = cv2.GaussianBlur(film.astype(np.float32), (0, 0), blur)
    grain = rng.uniform(0.02, 0.035) * strength * _grain((h, w), rng, 1.0 * scale)
    if "grain" in parts:
        film = film + grain
    # uneven scanner light: a radial fall-off and a linear gradient in a random direction
    y, x = np.linspace(-1, 1, h, dtype=np.float32)[:, None], np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    angle = rng.uniform(0, 2 * np.pi)
    light = (1 - rng.uniform(0.12, 0.2) * strength * (x ** 2 + y ** 2) / 2
             + rng.uniform(0.05, 0.1) * strength * (np.cos(angle) * x + np.sin(angle) * y))
    if "light" in parts:
        film = film * light
    # the film's edge: a band of unexposed (clear, so bright) film along one side
    width = max(1, int(rng.uniform(0.03, 0.06) * min(strength, 1.5) * (h if rng.integers(2) else w)))
    side = int(rng.integers(4))
    band = np.zeros((h, w), bool)
    if strength > 0:
        band[(slice(0, width), slice(h - width, h), slice(None), slice(None))[side],
             (slice(None), slice(None), slice(0, width), slice(w - width, w))[side]] = True
    clear = rng.uniform(0.85, 0.95)
    if "edge" in parts:
        film = np.where(band, clear, film)
    return _finish(film)


TRANSFORMS: dict[str, Callable[[np.ndarray, np.random.Generator, float], np.ndarray]] = {
    "grain_noise": grain_noise,
    "contrast_curve": contrast_curve,
    "edge_enhance": edge_enhance,
    "low_resolution_jpeg": low_resolution_jpeg,
    "collimation_and_text": collimation_and_text,
    "digitised_film": digitised_film,
}

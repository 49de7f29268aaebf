"""Rendered documents and screens: grayscale non-chest images a user may upload by mistake (pure, offline).

A page of text, a photographed page, a terminal, a spreadsheet, a form, a slide, a receipt, charts and a
photographed screen, drawn here with the fonts matplotlib ships and a seeded generator, so every machine renders
the same set without the network. Measuring the out-of-distribution guard on them is their only use: no
threshold is placed with them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

WORDS = ("the", "patient", "report", "of", "and", "a", "to", "in", "results", "were", "reviewed", "by", "staff",
         "with", "no", "change", "since", "last", "visit", "please", "sign", "below", "invoice", "total", "date",
         "meeting", "agenda", "quarterly", "budget", "approved", "for", "next", "year", "figure", "table", "shows",
         "data", "from", "three", "sites", "contact", "office", "hours", "monday", "friday", "page")


def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    import matplotlib
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)


def _sentence(rng: np.random.Generator, words: int) -> str:
    text = " ".join(rng.choice(WORDS, words))
    return text[0].upper() + text[1:] + "."


def _page(rng: np.random.Generator, font: str, size: int = 18, shape: tuple[int, int] = (1100, 850),
          ink: int = 20, paper: int = 245) -> np.ndarray:
    """A page of wrapped paragraphs under a bold heading."""
    h, w = shape
    image = Image.new("L", (w, h), paper)
    draw = ImageDraw.Draw(image)
    body, heading = _font(font, size), _font("DejaVuSans-Bold.ttf", int(size * 1.6))
    draw.text((60, 50), _sentence(rng, 4).rstrip("."), font=heading, fill=ink)
    y = 50 + int(size * 3.2)
    while y < h - 80:
        line = ""
        for word in " ".join(_sentence(rng, int(rng.integers(8, 20))) for _ in range(4)).split():
            if draw.textlength(line + " " + word, font=body) > w - 120:
                draw.text((60, y), line.strip(), font=body, fill=ink)
                y, line = y + int(size * 1.4), ""
                if y >= h - 80:
                    break
            line += " " + word
        y += int(size * 1.4)
    return np.asarray(image)


def _photographed(page: np.ndarray, rng: np.random.Generator, tilt: float) -> np.ndarray:
    """The page as a phone would take it: on a darker desk, in perspective, lit unevenly, soft, noisy, JPEG."""
    h, w = page.shape
    out_h, out_w = int(h * 1.15), int(w * 1.25)
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    shift = np.float32([[out_w * 0.08 + tilt * w, out_h * 0.05], [out_w * 0.92, out_h * 0.08 + tilt * h],
                        [out_w * 0.88 - tilt * w, out_h * 0.95], [out_w * 0.1, out_h * 0.92 - tilt * h]])
    warped = cv2.warpPerspective(page, cv2.getPerspectiveTransform(corners, shift), (out_w, out_h),
                                 borderValue=int(rng.integers(60, 110)))
    yy, xx = np.mgrid[0:out_h, 0:out_w]
    light = 0.75 + 0.3 * (xx / out_w) * (1 - 0.5 * yy / out_h)
    shot = cv2.GaussianBlur(warped * light, (0, 0), 1.2) + rng.normal(0, 6, (out_h, out_w))
    _, jpeg = cv2.imencode(".jpg", np.clip(shot, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 70])
    return cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE)


def _terminal(rng: np.random.Generator) -> np.ndarray:
    image = Image.new("L", (1280, 800), 18)
    draw, font = ImageDraw.Draw(image), _font("DejaVuSansMono.ttf", 16)
    for row in range(38):
        prompt = "$ " if row % 5 == 0 else ""
        draw.text((12, 10 + row * 20), prompt + _sentence(rng, int(rng.integers(3, 14))).lower(), font=font,
                  fill=int(rng.choice([200, 230, 150])))
    return np.asarray(image)


def _spreadsheet(rng: np.random.Generator) -> np.ndarray:
    image = Image.new("L", (1200, 800), 250)
    draw, font = ImageDraw.Draw(image), _font("DejaVuSans.ttf", 14)
    for col, x in enumerate(range(0, 1200, 120)):
        draw.line([(x, 0), (x, 800)], fill=190)
        for row, y in enumerate(range(0, 800, 24)):
            if col == 0:
                draw.line([(0, y), (1200, y)], fill=190)
            text = f"{row}" if col == 0 else (WORDS[(row + col) % len(WORDS)] if row == 0 else
                                               f"{rng.normal(1000, 400):,.2f}")
            draw.text((x + 6, y + 4), text, font=font, fill=30)
    return np.asarray(image)


def _form(rng: np.random.Generator) -> np.ndarray:
    image = Image.new("L", (850, 1100), 252)
    draw, font = ImageDraw.Draw(image), _font("DejaVuSerif.ttf", 18)
    y = 60
    while y < 1000:
        draw.text((60, y), _sentence(rng, 3).rstrip(".") + ":", font=font, fill=25)
        draw.rectangle([(330, y - 4), (790, y + 28)], outline=40, width=2)
        if rng.random() < 0.4:
            for i in range(3):
                draw.rectangle([(340 + i * 150, y + 44), (360 + i * 150, y + 64)], outline=40, width=2)
                draw.text((370 + i * 150, y + 42), WORDS[int(rng.integers(len(WORDS)))], font=font, fill=25)
            y += 40
        y += 70
    xs = np.linspace(360, 700, 200)
    draw.line(list(zip(xs, 1040 + 12 * np.sin(xs / 9) * np.cos(xs / 23))), fill=30, width=2)  # a signature
    return np.asarray(image)


def _slide(rng: np.random.Generator) -> np.ndarray:
    image = Image.new("L", (1280, 720), 235)
    draw = ImageDraw.Draw(image)
    draw.rectangle([(0, 0), (1280, 110)], fill=70)
    draw.text((60, 25), _sentence(rng, 4).rstrip("."), font=_font("DejaVuSans-Bold.ttf", 48), fill=245)
    for i in range(5):
        draw.ellipse([(80, 182 + i * 95), (96, 198 + i * 95)], fill=40)
        draw.text((120, 170 + i * 95), _sentence(rng, 6), font=_font("DejaVuSans.ttf", 32), fill=30)
    return np.asarray(image)


def _receipt(rng: np.random.Generator) -> np.ndarray:
    image = Image.new("L", (420, 1200), 240)
    draw, font = ImageDraw.Draw(image), _font("DejaVuSansMono.ttf", 17)
    for row in range(50):
        item = WORDS[int(rng.integers(len(WORDS)))].upper()
        draw.text((20, 30 + row * 23), f"{item:<22}{rng.uniform(1, 60):>8.2f}", font=font, fill=45)
    return np.asarray(image)


def _chart(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A matplotlib chart as a screenshot would hold it, in gray."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(8, 6), dpi=100)
    axes = figure.add_subplot()
    if kind == "line":
        for _ in range(3):
            axes.plot(np.cumsum(rng.normal(0, 1, 200)))
    elif kind == "bar":
        axes.bar(range(12), rng.uniform(2, 10, 12))
    elif kind == "histogram":
        axes.hist(rng.normal(0, 1, 2000), bins=40)
    else:
        axes.scatter(*rng.normal(0, 1, (2, 300)), s=8)
    axes.set_title(_sentence(rng, 4).rstrip("."))
    axes.set_xlabel(WORDS[int(rng.integers(len(WORDS)))])
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("L"))


def _code(rng: np.random.Generator) -> np.ndarray:
    """A block of black and white modules, as a QR code or a data matrix looks."""
    modules = (rng.random((33, 33)) < 0.5).astype(np.uint8)
    for r, c in ((0, 0), (0, 26), (26, 0)):
        modules[r:r + 7, c:c + 7] = 1
        modules[r + 1:r + 6, c + 1:c + 6] = 0
        modules[r + 2:r + 5, c + 2:c + 5] = 1
    return np.pad(255 - modules * 255, 4, constant_values=255).repeat(16, 0).repeat(16, 1).astype(np.uint8)


def rendered_documents(seed: int = 0) -> dict[str, np.ndarray]:
    """Every document and screen, 8-bit gray, by name; the same seed draws the same images everywhere."""
    rng = np.random.default_rng(seed)
    makers: dict[str, Callable[[], np.ndarray]] = {
        "page (sans)": lambda: _page(rng, "DejaVuSans.ttf"),
        "page (serif)": lambda: _page(rng, "DejaVuSerif.ttf", size=16),
        "page (mono)": lambda: _page(rng, "DejaVuSansMono.ttf", size=14),
        "page (large print)": lambda: _page(rng, "DejaVuSans.ttf", size=30),
        "photographed page": lambda: _photographed(_page(rng, "DejaVuSerif.ttf"), rng, 0.02),
        "photographed page (tilted)": lambda: _photographed(_page(rng, "DejaVuSans.ttf"), rng, 0.07),
        "terminal": lambda: _terminal(rng),
        "spreadsheet": lambda: _spreadsheet(rng),
        "form": lambda: _form(rng),
        "slide": lambda: _slide(rng),
        "receipt": lambda: _receipt(rng),
        "line chart": lambda: _chart("line", rng),
        "bar chart": lambda: _chart("bar", rng),
        "histogram": lambda: _chart("histogram", rng),
        "scatter plot": lambda: _chart("scatter", rng),
        "photographed screen": lambda: _photographed(_chart("line", rng), rng, 0.04),
        "code": lambda: _code(rng),
    }
    return {name: make() for name, make in makers.items()}

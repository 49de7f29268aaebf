"""PNG and JPEG uploads: every pixel format decodes to the same radiograph; bad files get clear messages."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from covidviz.errors import XrayInputError
from covidviz.io.loading import load_xray


def _png(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _jpeg(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=95, **kw)
    return buf.getvalue()


def test_png_8bit_gray(xray_png, xray_gray):
    xray = load_xray(xray_png, "chest.png")
    assert xray.pixels.dtype == np.float32 and xray.pixels.shape == xray_gray.shape
    np.testing.assert_allclose(xray.pixels, xray_gray / 255.0, atol=1e-6)
    assert xray.warnings == () and xray.info["format"] == "PNG"


def test_png_16bit_uses_the_full_range(xray_gray):
    sixteen = (xray_gray.astype(np.uint16) * 16 + 100)  # 12-bit content in a 16-bit PNG
    xray = load_xray(_png(Image.fromarray(sixteen)), "chest16.png")
    expected = (sixteen - sixteen.min()) / (sixteen.max() - sixteen.min())
    np.testing.assert_allclose(xray.pixels, expected, atol=1e-5)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "LA"])
def test_gray_content_in_other_png_modes_loads_unchanged_without_colour_warning(xray_gray, mode):
    image = Image.fromarray(xray_gray).convert(mode)
    xray = load_xray(_png(image), f"chest_{mode}.png")
    np.testing.assert_allclose(xray.pixels, xray_gray / 255.0, atol=1 / 255 + 1e-6)
    assert xray.warnings == () and xray.colourfulness < 1e-6 and not xray.colourful


def test_jpeg_exif_orientation_is_applied(xray_gray):
    upright = Image.fromarray(xray_gray[:, 32:])  # not square, so a missed rotation changes the shape
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a camera stores a rotated shot
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation 6: the viewer must rotate 90 degrees clockwise
    xray = load_xray(_jpeg(stored, exif=exif), "chest.jpg")
    assert xray.pixels.shape == (upright.height, upright.width)
    assert np.abs(xray.pixels - np.asarray(upright) / 255.0).mean() < 0.01


def test_colour_photograph_is_flagged_not_rejected():
    """Loaded and flagged: the model then gives it no class (``Xray.colourful``), with its probabilities shown."""
    from skimage.data import astronaut
    xray = load_xray(_jpeg(Image.fromarray(astronaut())), "photo.jpg")
    assert xray.pixels.ndim == 2
    assert any("colour" in w for w in xray.warnings)
    assert xray.colourful and xray.colourfulness == pytest.approx(0.077, abs=0.01)


def test_a_radiograph_with_a_few_coloured_marks_is_not_a_colour_picture(xray_gray):
    """An exported film with a red arrow drawn on it is still read (the arrow is under 1% of the pixels)."""
    rgb = np.repeat(xray_gray[..., None], 3, axis=2)
    rgb[100:110, 60:160] = (255, 0, 0)
    xray = load_xray(_png(Image.fromarray(rgb)), "marked.png")
    assert 0 < xray.colourfulness < 0.04 and not xray.colourful


def _patch_png_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the IHDR chunk (with a valid CRC) to claim another size: a decompression-bomb header."""
    start = 8
    length = struct.unpack(">I", data[start:start + 4])[0]
    ihdr = bytearray(data[start + 8:start + 8 + length])
    ihdr[0:8] = struct.pack(">II", width, height)
    chunk = b"IHDR" + bytes(ihdr)
    return data[:start + 4] + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[start + 12 + length:]


@pytest.mark.parametrize("data,name,problem", [
    (b"", "empty.png", "empty"),
    (b"hello, this is a clinical note\n" * 10, "note.txt", "not a PNG, JPEG or DICOM"),
    (b"%PDF-1.7\n" + bytes(300), "scan.pdf", "not a PNG, JPEG or DICOM"),
    (b"PK\x03\x04" + bytes(300), "images.zip", "not a PNG, JPEG or DICOM"),
])
def test_non_images_are_rejected_with_what_is_accepted(data, name, problem):
    with pytest.raises(XrayInputError) as err:
        load_xray(data, name)
    assert problem in str(err.value) and "Accepted:" in str(err.value)


def test_truncated_png_is_rejected(xray_png):
    with pytest.raises(XrayInputError, match="truncated or corrupt"):
        load_xray(xray_png[: len(xray_png) // 2], "cut.png")


def test_corrupt_jpeg_is_rejected(xray_gray):
    data = bytearray(_jpeg(Image.fromarray(xray_gray)))
    data[600:] = bytes(len(data) - 600)  # header intact, entropy-coded data and EOI gone
    with pytest.raises(XrayInputError, match="truncated or corrupt"):
        load_xray(bytes(data), "broken.jpg")


def test_too_small_image_is_rejected(xray_gray):
    small = Image.fromarray(xray_gray).resize((48, 48))
    with pytest.raises(XrayInputError, match="too small"):
        load_xray(_png(small), "thumb.png")


@pytest.mark.parametrize("width,height", [(9000, 9000), (60000, 60000)])
def test_huge_and_bomb_headers_are_rejected_before_decoding(xray_png, width, height):
    import tracemalloc
    tracemalloc.start()
    with pytest.raises(XrayInputError, match="too large"):
        load_xray(_patch_png_size(xray_png, width, height), "bomb.png")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2**20  # nothing near width*height bytes was allocated


def test_error_message_never_includes_a_traceback(xray_png):
    with pytest.raises(XrayInputError) as err:
        load_xray(xray_png[:40], "cut.png")
    assert "Traceback" not in str(err.value) and "File \"" not in str(err.value)


def test_byte_limit_is_streamlits_and_is_enforced():
    import tomllib

    from covidviz.io.loading import MAX_BYTES, MAX_UPLOAD_MB
    from covidviz.paths import ROOT

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == MAX_UPLOAD_MB  # the page, the library and the CLI agree
    with pytest.raises(XrayInputError, match=f"over the {MAX_UPLOAD_MB} MB limit"):
        load_xray(b"\x89PNG\r\n\x1a\n" + bytes(MAX_BYTES), "huge.png")


def test_accepted_formats_message_states_the_enforced_limits():
    from covidviz.errors import ACCEPTED
    from covidviz.io.xray import MAX_PIXELS, MIN_SIDE

    assert f"at least {MIN_SIDE} px" in ACCEPTED and f"at most {MAX_PIXELS // 1_000_000} megapixels" in ACCEPTED


def test_an_image_far_longer_than_wide_is_refused_from_its_header():
    """A PNG whose header claims 256 x 65536 px (a mutated real X-ray) was decoded, slowly, as a strip."""
    import io

    from PIL import Image

    from covidviz.errors import XrayInputError
    from covidviz.io.loading import load_xray

    strip, almost = io.BytesIO(), io.BytesIO()
    Image.new("L", (64, 6 * 64 + 1)).save(strip, "PNG")
    Image.new("L", (64, 6 * 64)).save(almost, "PNG")
    with pytest.raises(XrayInputError, match="more than 6 times as long as it is wide"):
        load_xray(strip.getvalue(), "strip.png")
    assert load_xray(almost.getvalue(), "almost.png").pixels.shape == (384, 64)


def test_a_jpeg_far_too_short_for_its_size_is_refused_but_a_flat_one_is_read():
    import io

    from PIL import Image

    from covidviz.errors import XrayInputError
    from covidviz.io.loading import load_xray

    flat = io.BytesIO()  # the most compressible complete JPEG: one flat colour, progressive (~255 px per byte)
    Image.new("L", (2000, 2000)).save(flat, "JPEG", quality=95, progressive=True)
    assert load_xray(flat.getvalue(), "flat.jpg").pixels.shape == (2000, 2000)
    truncated = flat.getvalue()[:3000]  # the header still says 2000 x 2000
    with pytest.raises(XrayInputError, match="truncated: 3,000 bytes cannot hold the 2000 x 2000 px"):
        load_xray(truncated, "cut.jpg")

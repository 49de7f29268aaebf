"""DICOM uploads: transfer syntaxes, photometric and LUT handling, warnings, and no patient data out."""

from __future__ import annotations

import io
import logging

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, SecondaryCaptureImageStorage, generate_uid

from covidviz.errors import XrayInputError
from covidviz.io.loading import load_xray
from tests.conftest import dicom_path


def _bytes(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def chest_cr() -> pydicom.Dataset:
    """Real chest CR: PA, MONOCHROME1, 15 bits stored, 1841 x 1955, uncompressed."""
    return pydicom.dcmread(dicom_path("RG1_UNCI.dcm"))


def _copy(ds: pydicom.Dataset) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(_bytes(ds)))


def test_uncompressed_chest_cr(chest_cr):
    xray = load_xray(_bytes(chest_cr), "chest.dcm")
    assert xray.pixels.shape == (1955, 1841) and 0 <= xray.pixels.min() and xray.pixels.max() <= 1
    assert xray.warnings == ()
    assert xray.info["modality"] == "CR" and xray.info["view position"] == "PA" and xray.info["body part"] == "CHEST"
    # MONOCHROME1 inverted: lungs (air) dark, mediastinum and bone bright, as on a light box
    h, w = xray.pixels.shape
    lung = xray.pixels[h // 3:h // 2, w // 5:w // 3].mean()
    spine = xray.pixels[h // 3:h // 2, w // 2 - 40:w // 2 + 40].mean()
    assert spine > lung + 0.1


def test_jpeg2000_matches_uncompressed(chest_cr):
    j2k = load_xray(open(dicom_path("RG1_J2KI.dcm"), "rb").read(), "chest_j2k.dcm")
    raw = load_xray(_bytes(chest_cr), "chest.dcm")
    assert j2k.info["transfer syntax"].startswith("JPEG 2000")
    assert np.abs(j2k.pixels - raw.pixels).mean() < 0.01


def test_jpeg_lossless_decodes_and_flags_non_radiograph():
    xray = load_xray(open(dicom_path("JPEG-LL.dcm"), "rb").read(), "nm.dcm")
    assert "Lossless" in xray.info["transfer syntax"]
    assert xray.pixels.std() > 0.01
    assert any("Modality is NM" in w for w in xray.warnings)


def _chest_secondary_capture(transfer_syntax: str, shape: tuple[int, ...], samples: int) -> pydicom.Dataset:
    """A frontal chest DX Secondary Capture of 8-bit pixels, without its pixel data, as a viewer exports one."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
    ds.Rows, ds.Columns = shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = samples, "RGB" if samples == 3 else "MONOCHROME2"
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    return ds


def test_jpeg_baseline_chest(xray_gray):
    buf = io.BytesIO()
    Image.fromarray(xray_gray).save(buf, format="JPEG", quality=95)
    ds = _chest_secondary_capture(JPEGBaseline8Bit, xray_gray.shape, samples=1)
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    xray = load_xray(_bytes(ds), "baseline.dcm")
    assert xray.info["transfer syntax"].startswith("JPEG Baseline")
    assert np.abs(xray.pixels - xray_gray / 255.0).mean() < 0.02
    assert xray.warnings == ()


def test_monochrome2_relabelled_is_the_inverse(chest_cr):
    ds = _copy(chest_cr)
    ds.PhotometricInterpretation = "MONOCHROME2"
    mono1 = load_xray(_bytes(chest_cr), "a.dcm").pixels
    mono2 = load_xray(_bytes(ds), "b.dcm").pixels
    np.testing.assert_allclose(mono1, 1 - mono2, atol=1e-5)


def test_rescale_slope_is_applied(chest_cr):
    ds = _copy(chest_cr)
    del ds.WindowCenter, ds.WindowWidth
    base = load_xray(_bytes(ds), "a.dcm").pixels
    ds.RescaleSlope, ds.RescaleIntercept = -1, 4095  # a negative slope inverts stored values
    flipped = load_xray(_bytes(ds), "b.dcm").pixels
    np.testing.assert_allclose(flipped, 1 - base, atol=1e-5)


def test_window_is_applied(chest_cr):
    ds = _copy(chest_cr)
    raw = ds.pixel_array.astype(float)
    lo, hi = np.percentile(raw, [30, 70])
    ds.WindowCenter, ds.WindowWidth = float((lo + hi) / 2), float(hi - lo)
    windowed = load_xray(_bytes(ds), "w.dcm").pixels
    assert (windowed <= 1e-6).mean() > 0.25 and (windowed >= 1 - 1e-6).mean() > 0.25  # both ends clipped


def test_bits_stored_masks_unused_high_bits(chest_cr):
    ds = _copy(chest_cr)
    clean = load_xray(_bytes(ds), "a.dcm").pixels
    raw = ds.pixel_array.astype(np.uint16)
    ds.PixelData = (raw | 0x8000).tobytes()  # garbage in bit 15, outside BitsStored=15
    dirty = load_xray(_bytes(ds), "b.dcm").pixels
    np.testing.assert_allclose(dirty, clean, atol=1e-6)


def test_lateral_view_and_non_chest_are_flagged(chest_cr):
    ds = _copy(chest_cr)
    ds.ViewPosition = "LL"
    assert any("lateral" in w for w in load_xray(_bytes(ds), "lat.dcm").warnings)
    knee = load_xray(open(dicom_path("RG3_UNCI.dcm"), "rb").read(), "rg3.dcm")
    assert any("EXTREMITY" in w for w in knee.warnings)
    ct = load_xray(open(dicom_path("CT_small.dcm"), "rb").read(), "ct.dcm")
    assert any("Modality is CT" in w for w in ct.warnings)


def test_multiframe_is_rejected():
    with pytest.raises(XrayInputError, match="2 frames"):
        load_xray(open(dicom_path("OBXXXX1A_2frame.dcm"), "rb").read(), "cine.dcm")


def test_dicom_without_pixel_data_is_rejected(chest_cr):
    ds = _copy(chest_cr)
    del ds.PixelData
    with pytest.raises(XrayInputError, match="no image"):
        load_xray(_bytes(ds), "report.dcm")


def test_truncated_dicom_is_rejected(chest_cr):
    data = _bytes(chest_cr)
    with pytest.raises(XrayInputError, match="DICOM"):
        load_xray(data[: len(data) // 3], "cut.dcm")


def test_patient_identifiers_never_leave_the_loader(chest_cr, caplog, capsys):
    ds = _copy(chest_cr)
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", "PID-778899", "19610203"
    ds.InstitutionName, ds.AccessionNumber = "St Elsewhere", "ACC-445566"
    with caplog.at_level(logging.DEBUG):
        xray = load_xray(_bytes(ds), "named.dcm")
    visible = repr(xray.info) + repr(xray.warnings) + caplog.text + "".join(capsys.readouterr())
    for secret in ("Doe", "Jane", "PID-778899", "19610203", "St Elsewhere", "ACC-445566"):
        assert secret not in visible
    assert set(xray.info) <= {"format", "size", "modality", "view position", "body part", "photometric",
                              "pixel spacing", "bits stored", "transfer syntax"}


def test_malformed_header_values_are_rejected_not_raised():
    from covidviz.data.ood_sets import dicom_test_folders
    bad_vr = next(f / "badVR.dcm" for f in dicom_test_folders() if (f / "badVR.dcm").is_file())
    with pytest.raises(XrayInputError, match="NumberOfFrames is not a number"):  # its value is "1A"
        load_xray(bad_vr.read_bytes(), "badVR.dcm")


def test_every_pydicom_test_file_loads_or_is_rejected_cleanly():
    """Dozens of real, odd DICOMs (big endian, RLE, JPEG-LS, palettes, overlays, broken files): no crash."""
    from covidviz.data.ood_sets import dicom_test_folders
    seen = 0
    for folder in dicom_test_folders():
        for path in sorted(folder.glob("*.dcm")):
            seen += 1
            try:
                xray = load_xray(path.read_bytes(), path.name)
            except XrayInputError as err:
                assert "Accepted:" in str(err)
                continue
            assert xray.pixels.ndim == 2 and np.isfinite(xray.pixels).all()
            assert 0 <= xray.pixels.min() and xray.pixels.max() <= 1
    assert seen > 50


def _rgb_secondary_capture(rgb: np.ndarray) -> bytes:
    """An uncompressed RGB Secondary Capture of a chest, as a screen grab or an export from a viewer is stored."""
    from pydicom.uid import ExplicitVRLittleEndian
    ds = _chest_secondary_capture(ExplicitVRLittleEndian, rgb.shape, samples=3)
    ds.PixelData = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    return _bytes(ds)


def test_a_colour_dicom_is_measured_for_colour_not_judged_by_its_photometric(xray_gray):
    """An RGB DICOM whose channels are equal (a radiograph exported in colour) is gray: it is read as a film.
    One holding a colour photograph is a colour picture: the model gives it no class (``Xray.colourful``)."""
    from skimage.data import astronaut
    gray = load_xray(_rgb_secondary_capture(np.repeat(xray_gray[..., None], 3, axis=2)), "export.dcm")
    expected = (xray_gray - xray_gray.min()) / float(xray_gray.max() - xray_gray.min())  # DICOM: min-max scaled
    assert np.abs(gray.pixels - expected).max() < 1e-5
    assert gray.colourfulness < 1e-6 and not gray.colourful
    assert any("colour image" in w for w in gray.warnings)  # the photometric is still worth a note
    photo = load_xray(_rgb_secondary_capture(astronaut()), "photo.dcm")
    assert photo.colourful and photo.pixels.ndim == 2

"""A real PACS for the tests: Debian's Orthanc (/usr/sbin/Orthanc) with its DICOMweb plugin, started on
127.0.0.1 on free ports with a temporary JSON configuration and storage directory, HTTP basic
authentication on, and stopped (storage deleted) at teardown. Started by
:class:`covidviz.interop.orthanc.LocalOrthanc`, the same code as ``python -m covidviz pacs demo``.

What it holds, honestly:

- ``RG1_UNCI.dcm`` from pydicom-data: a real CR chest PA radiograph (Philips, 1841 x 1955, MONOCHROME1, 15 bit),
  with a real-looking header (patient "CompressedSamples^RG1", accession "exam Number");
- ``RG3_UNCI.dcm``: a real CR radiograph of an extremity (a study that is not a chest radiograph);
- ``CT_small.dcm``: a real CT slice (a study that is not a radiograph at all);
- two studies built here from ``examples/xrays`` PNGs (:mod:`covidviz.interop.sample_dicom`): real chest X-ray
  pixels in CR headers whose patients, dates and accession numbers are invented; the second study holds a
  frontal image and the same pixels labelled as a lateral view, to check that laterals are left out.

They are loaded through Orthanc's own REST API (``POST /instances``), not through covidviz, so a bug in
covidviz's STOW-RS cannot hide behind its own fixture.

Where Orthanc is not installed the tests skip with the reason, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import base64
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pydicom
import pytest

from covidviz.interop.orthanc import LocalOrthanc, missing_parts
from covidviz.interop.part10 import part10
from covidviz.interop.sample_dicom import Invented, radiograph_from_png
from tests.conftest import FIXTURES, dicom_path, fixture_rows

CREDENTIALS = ("covidviz-test", "not-a-real-password-7f3a")

requires_orthanc = pytest.mark.skipif(bool(missing_parts()) and not os.environ.get("CI"),
                                      reason="Debian orthanc and orthanc-dicomweb are not installed "
                                             "(make test installs them)")


@dataclass(frozen=True)
class LoadedPacs:
    """The running server and what was put into it."""

    orthanc: LocalOrthanc
    chest: pydicom.Dataset  # RG1: the real chest radiograph (header only matters to the tests)
    extremity: pydicom.Dataset
    ct: pydicom.Dataset
    demo: tuple[pydicom.Dataset, ...]  # the PNG-built images: [0] study A (PA), [1] + [2] study B (PA + lateral)

    @property
    def environment(self) -> dict[str, str]:
        return {"COVIDVIZ_DICOMWEB_URL": self.orthanc.dicomweb_url, "COVIDVIZ_DICOMWEB_USER": CREDENTIALS[0],
                "COVIDVIZ_DICOMWEB_PASSWORD": CREDENTIALS[1]}

    def rest(self, path: str, data: bytes | None = None) -> bytes:
        """Orthanc's native REST API (independent of covidviz's DICOMweb client)."""
        request = urllib.request.Request(self.orthanc.url + path, data=data, method="POST" if data else "GET")
        token = base64.b64encode(":".join(CREDENTIALS).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()


def demo_images() -> tuple[pydicom.Dataset, ...]:
    rows = fixture_rows()
    png_a = (FIXTURES / rows[2]["fixture"]).read_bytes()  # NIH ChestX-ray14, PA
    png_b = (FIXTURES / rows[4]["fixture"]).read_bytes()  # Hannover, PA
    a = Invented("Testcase^Alpha", "CVZTEST-A", "19510203", "F", "20240311", "CVZTEST01", "PA")
    b = Invented("Testcase^Beta", "CVZTEST-B", "19620405", "M", "20240312", "CVZTEST02", "PA")
    first_b = radiograph_from_png(png_b, b, series_number=1)
    lateral = radiograph_from_png(png_b, Invented(**{**b.__dict__, "view": "LL"}), series_number=2,
                                  study_uid=first_b.StudyInstanceUID)
    return radiograph_from_png(png_a, a), first_b, lateral


@pytest.fixture(scope="module")
def pacs() -> Iterator[LoadedPacs]:
    chest, extremity, ct = (pydicom.dcmread(dicom_path(n)) for n in ("RG1_UNCI.dcm", "RG3_UNCI.dcm", "CT_small.dcm"))
    demo = demo_images()
    with LocalOrthanc(credentials=CREDENTIALS) as orthanc:
        loaded = LoadedPacs(orthanc, chest, extremity, ct, demo)
        for name in ("RG1_UNCI.dcm", "RG3_UNCI.dcm", "CT_small.dcm"):
            loaded.rest("/instances", open(dicom_path(name), "rb").read())  # the files as they are
        for dataset in demo:
            loaded.rest("/instances", part10(dataset))
        yield loaded

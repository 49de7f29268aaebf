"""DICOM radiographs for the local PACS demo and the tests, built from the example PNGs.

Honest about what they are: the pixels are real chest X-rays (examples/xrays, public datasets, see its
manifest.csv); the DICOM header around them (patient, study, dates, accession numbers) is invented here
and says so in its Derivation Description. Each is a CR Image Storage instance with the attributes a PACS
indexes and a viewer needs.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from covidviz.interop.pacs import CR_STORAGE
from covidviz.paths import EXAMPLES_DIR

DEMO_START = dt.date(2024, 3, 1)


@dataclass(frozen=True)
class Invented:
    """The invented header of one demo study (nothing here belongs to a real person)."""

    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    study_date: str
    accession: str
    view: str = "PA"
    study_description: str = "XR CHEST"


def radiograph_from_png(png: bytes, who: Invented, series_number: int = 1, instance_number: int = 1,
                        study_uid: str | None = None, series_uid: str | None = None,
                        body_part: str = "CHEST") -> Dataset:
    """A CR image of ``png``'s gray pixels under the invented header ``who`` (UIDs derived from it, so the
    same demo builds the same study every time)."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.uint8)
    seed = [who.patient_id, who.accession]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CR_STORAGE
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CR_STORAGE
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[*seed, "image", str(series_number), str(instance_number)])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.DerivationDescription = "Public chest X-ray PNG converted by covidviz; patient and study invented for a demo"
    ds.PatientName, ds.PatientID = who.patient_name, who.patient_id
    ds.PatientBirthDate, ds.PatientSex = who.birth_date, who.sex
    ds.StudyInstanceUID = study_uid or generate_uid(entropy_srcs=[*seed, "study"])
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = who.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "090000"
    ds.ReferringPhysicianName = ""
    ds.StudyID = who.accession[-8:]
    ds.AccessionNumber = who.accession
    ds.StudyDescription = who.study_description
    ds.Modality = "CR"
    ds.SeriesInstanceUID = series_uid or generate_uid(entropy_srcs=[*seed, "series", str(series_number)])
    ds.SeriesNumber = series_number
    ds.SeriesDescription = f"{body_part.title()} {who.view}".strip()
    ds.BodyPartExamined = body_part
    ds.ViewPosition = who.view
    ds.Manufacturer = "covidviz demo"
    ds.InstanceNumber = instance_number
    ds.PatientOrientation = ["L", "F"] if who.view in ("PA", "AP", "") else ""  # frontal as displayed; else unknown
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    return ds


def enlarged_radiograph(png: bytes, side: int, index: int = 0) -> bytes:
    """Part 10 bytes of a 16-bit CR DICOM, ``side`` x ``side`` px (12 bits stored), from a real X-ray PNG
    enlarged: 4800 px is a 46 MB file, near the upload limit. For load tests and benchmarks; ``index``
    varies the invented patient so that each file differs."""
    from pydicom.filebase import DicomBytesIO

    who = Invented(patient_name=f"LOAD^TEST{index}", patient_id=f"LT{index:04d}", birth_date="19600101", sex="O",
                   study_date="20240301", accession=f"LOAD{index:04d}")
    ds = radiograph_from_png(png, who)
    gray = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)
    big = np.asarray(Image.fromarray(gray, mode="F").resize((side, side), Image.Resampling.BICUBIC))
    ds.Rows = ds.Columns = side
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelData = np.clip(big / 255.0 * 4095.0, 0, 4095).astype(np.uint16).tobytes()
    out = DicomBytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def example_studies(examples_dir: Path = EXAMPLES_DIR) -> Iterator[Dataset]:
    """One invented study per example PNG, a few days apart, with accession numbers CVZDEMO01, 02, ..."""
    with (examples_dir / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for n, row in enumerate(rows, start=1):
        who = Invented(patient_name=f"Demo^Patient{n:02d}", patient_id=f"CVZDEMO-P{n:02d}",
                       birth_date=dt.date(1940 + 7 * n % 50, 1 + n % 12, 1 + 5 * n % 28).strftime("%Y%m%d"), sex="O",
                       study_date=(DEMO_START + dt.timedelta(days=2 * n)).strftime("%Y%m%d"),
                       accession=f"CVZDEMO{n:02d}", view=(row.get("view") or "").strip().upper())
        yield radiograph_from_png((examples_dir / row["fixture"]).read_bytes(), who)

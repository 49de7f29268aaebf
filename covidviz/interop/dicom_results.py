"""A reading's results as DICOM objects a PACS files next to the radiograph, written with highdicom.

- A Secondary Capture image: the chosen heatmap over the radiograph, "NOT FOR DIAGNOSTIC USE" burnt into the
  pixels (a viewer shows pixels, not attributes), in the source's study, in a new series, referencing the
  source image it was derived from.
- A Comprehensive SR holding a TID 1500 Measurement Report: the three calibrated probabilities, the class by the
  model's decision rule (or, where it gives none, no finding and no probabilities: only the reason), the predicted
  class, the out-of-distribution and lung-energy flags, the algorithm (name, version = weights sha256,
  parameters), the source image, verification flag UNVERIFIED (no person has checked it).

Patient and study attributes are copied from the source header into these two objects only, because DICOM
requires it (a result must file under the right patient and study). Nothing here logs or returns them.

Over 300 lines on purpose: the two objects share the algorithm, the facts, the coded concepts and the copied
header, and the SR names the SC as its evidence; split, each half would import the other's internals.
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from covidviz import CLASS_TITLES, CLASSES, __version__
from covidviz.explain.cam.methods import FAST_METHOD
from covidviz.explain.overlay import FIELD_COLOUR, LUNG_COLOUR, downscale, outline, render
from covidviz.explain.reading import Reading, heatmap, heatmap_on_original, lungs_on_display, read_xray
from covidviz.interop.inputs import DicomResultError, HeatmapChoice, source_header
from covidviz.interop.part10 import part10
from covidviz.io.isolation import read_untrusted
from covidviz.lungs.field import LOW_LUNG_SHARE
from covidviz.model.predictor import Predictor

MANUFACTURER = "covidviz"
NOT_FOR_DIAGNOSIS = "NOT FOR DIAGNOSTIC USE"
NOT_FOR_DIAGNOSTIC_SENTENCE = "Not for diagnostic use."
SC_SERIES_NUMBER = 9901  # high numbers keep result series after the acquired ones in a viewer's series list
SR_SERIES_NUMBER = 9902
SC_SERIES_DESCRIPTION = "covidviz heatmap - NOT FOR DIAGNOSTIC USE"
SR_SERIES_DESCRIPTION = "covidviz AI result - unverified"
SC_MAX_SIDE = 2048  # a radiograph's detail at a viewer's scale; the SC is a picture to look at, not to measure
FRONTAL_ORIENTATION = ("L", "F")  # how a PA/AP chest film is displayed; highdicom wants one (see secondary_capture)

# Codes. Standard ones where a standard concept exists; the rest in a private scheme (PS3.16 section 8: private
# designators start with "99"), declared in the SR's Coding Scheme Identification Sequence.
SCHEME = "99COVIDVIZ"
CHEST_XRAY = hd.sr.CodedConcept("399208008", "SCT", "Plain chest X-ray")
CLASS_CODES: dict[str, hd.sr.CodedConcept] = {
    "covid": hd.sr.CodedConcept("840539006", "SCT", "COVID-19"),
    "pneumonia": hd.sr.CodedConcept("233604007", "SCT", "Pneumonia"),
    "normal": hd.sr.CodedConcept("17621005", "SCT", "Normal"),
}
PREDICTED_CLASS = hd.sr.CodedConcept("CVZ001", SCHEME, "Predicted class")
OUT_OF_DISTRIBUTION = hd.sr.CodedConcept("CVZ002", SCHEME, "Out of distribution (prediction not meaningful)")
UNLIKE_TRAINING = hd.sr.CodedConcept("CVZ003", SCHEME, "Unlike the training images")
OOD_DISTANCE = hd.sr.CodedConcept("CVZ004", SCHEME, "Feature distance from training images")
LUNG_FIELD_READ = hd.sr.CodedConcept("CVZ005", SCHEME, "Lung field read")
LUNG_ENERGY = hd.sr.CodedConcept("CVZ006", SCHEME, "Heatmap energy inside lungs")
OUTSIDE_LUNGS = hd.sr.CodedConcept("CVZ007", SCHEME, "Heatmap mostly outside lungs")
HEATMAP_CLASS = hd.sr.CodedConcept("CVZ008", SCHEME, "Class of the heatmap")
NO_CLASS_REASON = hd.sr.CodedConcept("CVZ009", SCHEME, "No class given: reason")
NO_UNITS = codes.UCUM.NoUnits
SOURCE_FOR_PROCESSING = hd.sr.CodedConcept("121322", "DCM", "Source image for image processing operation")

PATIENT_STUDY_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                          "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName")


@dataclass(frozen=True)
class Algorithm:
    """TID 4019 Algorithm Identification: what produced the result, exactly enough to reproduce it."""

    name: str
    version: str  # the weights' sha256: a retrained model is another version even under the same name
    parameters: tuple[str, ...] = ()

    @classmethod
    def of(cls, predictor: Predictor, choice: HeatmapChoice) -> Algorithm:
        sidecar = predictor.sidecar
        params = [f"covidviz {__version__}", f"input size {predictor.input_size} px",
                  f"temperature {predictor.temperature:.4f}",
                  f"calibration: {predictor.calibration.note}",
                  f"lung fields: {'yes' if predictor.segmenter is not None else 'no'}"]
        if predictor.guard is not None:
            params.append(f"out-of-distribution threshold {predictor.guard.threshold:.2f}, "
                          f"caution {predictor.guard.caution:.2f}")
        params.append(f"heatmap: {choice.method}" + (f" ({choice.scale})" if choice.method == FAST_METHOD else ""))
        return cls(name=str(sidecar["name"]), version=str(sidecar["weights_sha256"]), parameters=tuple(params))

    @property
    def device_uid(self) -> str:
        """One UID per model version (derived from its hash), so a PACS can group every result of one model."""
        return generate_uid(prefix=None, entropy_srcs=[MANUFACTURER, self.name, self.version])


@dataclass(frozen=True)
class ResultFacts:
    """What the SR states, taken from one reading and the heatmap put into the Secondary Capture."""

    probabilities: dict[str, float]
    label: str | None  # by the model's decision rule; None: no class given (``abstained`` says why)
    abstained: str | None
    is_outlier: bool
    is_unusual: bool
    ood_distance: float | None
    lung_field_read: bool | None  # None: the model does not read lung fields
    heatmap_class: str  # the class whose map the SC shows (its method is among the algorithm's parameters)
    lung_share: float | None  # that map's energy inside the lungs; None without a lung mask or for an empty map

    @classmethod
    def of(cls, reading: Reading, cam: np.ndarray, choice: HeatmapChoice, predictor: Predictor) -> ResultFacts:
        share = reading.lung_share(cam)
        lung_fields = predictor.segmenter is not None
        label, abstained = reading.verdict(predictor)
        return cls(probabilities={c: float(p) for c, p in zip(CLASSES, reading.probabilities)}, label=label,
                   abstained=abstained,
                   is_outlier=reading.is_outlier, is_unusual=reading.is_unusual, ood_distance=reading.ood_distance,
                   lung_field_read=reading.read_lung_field if lung_fields else None,
                   heatmap_class=CLASSES[choice.class_for(reading, predictor.decision)],
                   lung_share=None if share is None or share != share else float(share))

    @property
    def mostly_outside_lungs(self) -> bool | None:
        return None if self.lung_share is None else self.lung_share < LOW_LUNG_SHARE


@dataclass(frozen=True)
class DicomResults:
    """The two result objects of one source image (highdicom datasets, ready to write or to send)."""

    sc: hd.sc.SCImage
    sr: hd.sr.ComprehensiveSR
    facts: ResultFacts = field(repr=False)

    def files(self, stem: str) -> dict[str, bytes]:
        """File name -> DICOM Part 10 bytes."""
        return {f"{stem}.covidviz-sc.dcm": part10(self.sc), f"{stem}.covidviz-sr.dcm": part10(self.sr)}


def _complete_type2(header: Dataset) -> Dataset:
    """A copy with every patient and study attribute present (empty when the source lacks it), as the result
    objects must carry them (Type 2) and highdicom reads them as attributes."""
    out = Dataset()
    out.file_meta = getattr(header, "file_meta", Dataset())
    out.update(header)
    for keyword in PATIENT_STUDY_KEYWORDS:
        if keyword not in out or out[keyword].value is None:
            setattr(out, keyword, "")
    return out


# --- the Secondary Capture -------------------------------------------------------------------------------------------


def result_overlay(reading: Reading, cam: np.ndarray, choice: HeatmapChoice, probability: float,
                   heatmap_class: int) -> np.ndarray:
    """The overlay as the Diagnose page draws it (map, read region, lung outline) at up to SC_MAX_SIDE px,
    with the warning and the map's identity (``heatmap_class``, its ``probability``) burnt in."""
    gray = downscale(reading.xray.pixels, SC_MAX_SIDE)
    placed = downscale(heatmap_on_original(reading, cam), SC_MAX_SIDE)
    rgb = render(gray, placed, choice.style, choice.colormap, choice.opacity, choice.threshold)
    if not reading.box.covers(reading.xray.pixels.shape):
        rgb = outline(rgb, ~np.isnan(placed), FIELD_COLOUR, dashed=True)
    lungs = lungs_on_display(reading, gray.shape) if choice.lung_outline else None
    if lungs is not None:
        rgb = outline(rgb, lungs, LUNG_COLOUR)
    lines = [NOT_FOR_DIAGNOSIS, "covidviz AI heatmap, unverified",
             f"{choice.method}: {CLASS_TITLES[CLASSES[heatmap_class]]}, p = {probability:.1%}"]
    if reading.is_outlier:
        lines.append("OUT OF DISTRIBUTION: prediction not meaningful")
    return burn_in(rgb, lines)


def burn_in(rgb: np.ndarray, lines: list[str]) -> np.ndarray:
    """White text with a black edge in the top-left corner: legible on any part of a radiograph, and no band
    hides the anatomy beneath."""
    out = np.ascontiguousarray(rgb.copy())
    height, width = out.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = max(height, width) / 1100
    widest = max(cv2.getTextSize(line, font, scale, 1)[0][0] for line in lines)
    scale *= min(1.0, 0.9 * width / max(widest, 1))  # a narrow image: shrink the text to fit
    thickness = max(1, round(scale * 2))
    line_height = cv2.getTextSize("Ag", font, scale, thickness)[0][1] * 1.8
    margin = max(4, round(line_height * 0.6))
    for i, line in enumerate(lines):
        origin = (margin, round(margin + line_height * (i + 0.8)))
        cv2.putText(out, line, origin, font, scale, (0, 0, 0), thickness + max(2, thickness), cv2.LINE_AA)
        cv2.putText(out, line, origin, font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


def secondary_capture(source: Dataset, overlay_rgb: np.ndarray, algorithm: Algorithm,
                      created: dt.datetime) -> hd.sc.SCImage:
    """The overlay as an SC image in the source's study (new series), derived from and referencing the source."""
    header = _complete_type2(source)
    orientation = [str(v) for v in (header.get("PatientOrientation") or [])]
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=header, pixel_array=overlay_rgb, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT",
        patient_orientation=tuple(orientation) if len(orientation) == 2 else FRONTAL_ORIENTATION,
        series_instance_uid=hd.UID(), series_number=SC_SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name=algorithm.name[:64],
        software_versions=f"{__version__} weights {algorithm.version[:12]}", series_description=SC_SERIES_DESCRIPTION,
        content_date=created.date(), content_time=created.time(), series_date=created.date(),
        series_time=created.time(), transfer_syntax_uid=ExplicitVRLittleEndian)
    if len(orientation) != 2:
        sc.PatientOrientation = ""  # Type 2: unknown in the source (a CT slice, say), so unknown here, not guessed
    sc.ConversionType = "WSD"  # made on a workstation, not digitised from an interface
    if header.get("BodyPartExamined"):
        sc.BodyPartExamined = header.BodyPartExamined
    if header.get("Laterality") or not header.get("BodyPartExamined"):
        sc.Laterality = header.get("Laterality", "") or ""  # Type 2C: empty = unknown; absent for the chest
    # The burnt-in text does not identify the patient; pixels copied from the source may, if the source says so.
    sc.BurnedInAnnotation = "YES" if str(header.get("BurnedInAnnotation", "")).upper() == "YES" else "NO"
    sc.ImageComments = (f"{NOT_FOR_DIAGNOSTIC_SENTENCE} {algorithm.name}, weights {algorithm.version[:12]}: "
                        "heatmap of the model's attention over the source radiograph. Unverified.")
    sc.DerivationDescription = "Class activation map of an AI model blended over the source radiograph"
    reference = Dataset()
    reference.ReferencedSOPClassUID = header.SOPClassUID
    reference.ReferencedSOPInstanceUID = header.SOPInstanceUID
    reference.PurposeOfReferenceCodeSequence = [SOURCE_FOR_PROCESSING]
    sc.SourceImageSequence = [reference]
    if str(header.get("LossyImageCompression", "")) == "01":  # once lossy, every derived image says so
        sc.LossyImageCompression = "01"
        for keyword in ("LossyImageCompressionRatio", "LossyImageCompressionMethod"):
            if keyword in header:
                setattr(sc, keyword, header[keyword].value)
    return sc


# --- the Structured Report -------------------------------------------------------------------------------------------


def _yes_no(value: bool) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept.from_code(codes.SCT.Yes if value else codes.SCT.No)


def _measurement_groups(facts: ResultFacts, algorithm: Algorithm, source: Dataset
                        ) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    algorithm_id = hd.sr.AlgorithmIdentification(name=algorithm.name, version=algorithm.version,
                                                 parameters=list(algorithm.parameters), manufacturer=MANUFACTURER)
    image = [hd.sr.SourceImageForMeasurementGroup.from_source_image(source)]
    groups = []
    if facts.abstained is None:  # no finding where no class is given: only the reason, below
        for name in CLASSES:  # one group per class: "the probability of this finding is p"
            groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(),
                                                             identifier=f"covidviz {CLASS_TITLES[name]}"),
                finding_type=CLASS_CODES[name], algorithm_id=algorithm_id, source_images=image,
                measurements=[hd.sr.Measurement(name=codes.DCM.Probability, value=facts.probabilities[name],
                                                unit=NO_UNITS, algorithm_id=algorithm_id)]))
    evaluations = ([hd.sr.QualitativeEvaluation(PREDICTED_CLASS, CLASS_CODES[facts.label])] if facts.label else [])
    evaluations += [hd.sr.QualitativeEvaluation(OUT_OF_DISTRIBUTION, _yes_no(facts.is_outlier)),
                    hd.sr.QualitativeEvaluation(UNLIKE_TRAINING, _yes_no(facts.is_unusual or facts.is_outlier))]
    if facts.lung_field_read is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(LUNG_FIELD_READ, _yes_no(facts.lung_field_read)))
    if facts.abstained is None:
        evaluations.append(hd.sr.QualitativeEvaluation(HEATMAP_CLASS, CLASS_CODES[facts.heatmap_class]))
        if facts.mostly_outside_lungs is not None:
            evaluations.append(hd.sr.QualitativeEvaluation(OUTSIDE_LUNGS, _yes_no(facts.mostly_outside_lungs)))
    measurements = []
    if facts.ood_distance is not None:
        measurements.append(hd.sr.Measurement(name=OOD_DISTANCE, value=float(facts.ood_distance), unit=NO_UNITS,
                                              algorithm_id=algorithm_id))
    if facts.lung_share is not None and facts.abstained is None:
        measurements.append(hd.sr.Measurement(name=LUNG_ENERGY, value=facts.lung_share, unit=NO_UNITS,
                                              algorithm_id=algorithm_id))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="covidviz classification"),
        algorithm_id=algorithm_id, source_images=image,  # no finding type: the class is in "Predicted class"
        measurements=measurements or None, qualitative_evaluations=evaluations)
    if facts.abstained is not None:
        group[0].ContentSequence.append(hd.sr.TextContentItem(
            name=NO_CLASS_REASON, value=facts.abstained[:1024],
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    groups.append(group)
    return groups


def structured_report(source: Dataset, facts: ResultFacts, algorithm: Algorithm, sc: Dataset | None,
                      created: dt.datetime) -> hd.sr.ComprehensiveSR:
    """TID 1500 in a Comprehensive SR, in the source's study (new series); the SC, made for the same
    request, is listed as evidence beside the source."""
    header = _complete_type2(source)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=algorithm.device_uid, name=MANUFACTURER, manufacturer_name=MANUFACTURER,
            model_name=algorithm.name[:64]))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=CHEST_XRAY, imaging_measurements=_measurement_groups(facts, algorithm, header))
    scheme = hd.coding_schemes.CodingSchemeIdentificationItem(
        designator=SCHEME, name="covidviz result concepts", responsible_organization=MANUFACTURER)
    return hd.sr.ComprehensiveSR(
        evidence=[header, *([sc] if sc is not None else [])], content=report[0],
        series_instance_uid=hd.UID(), series_number=SR_SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False,
        series_description=SR_SERIES_DESCRIPTION, manufacturer_model_name=algorithm.name[:64],
        software_versions=f"{__version__} weights {algorithm.version[:12]}", coding_schemes=[scheme],
        content_date=created.date(), content_time=created.time(), series_date=created.date(),
        series_time=created.time())


# --- both ------------------------------------------------------------------------------------------------------------


def dicom_results(source: Dataset, reading: Reading, predictor: Predictor, choice: HeatmapChoice = HeatmapChoice(),
                  cam: np.ndarray | None = None, created: dt.datetime | None = None) -> DicomResults:
    """SC and SR for one reading of ``source``. ``cam``: the map already computed for ``choice`` (the page's
    cache); computed here otherwise."""
    created = created or dt.datetime.now().astimezone()
    k = choice.class_for(reading, predictor.decision)
    if cam is None:
        cam = heatmap(reading, predictor, choice.method, k, choice.scale)
    algorithm = Algorithm.of(predictor, choice)
    facts = ResultFacts.of(reading, cam, choice, predictor)
    overlay = result_overlay(reading, cam, choice, reading.probability(k), k)
    with warnings.catch_warnings():
        # highdicom and pydicom quote the offending value when they warn about an odd name or date: that value
        # is the patient's, and warnings end up in logs
        warnings.simplefilter("ignore")
        sc = secondary_capture(source, overlay, algorithm, created)
        return DicomResults(sc=sc, sr=structured_report(source, facts, algorithm, sc, created), facts=facts)


def results_for_bytes(predictor: Predictor, data: bytes, name: str,
                      choice: HeatmapChoice = HeatmapChoice()) -> DicomResults:
    """Read a DICOM file's bytes as the Diagnose page does and make its results.

    Raises :class:`DicomResultError` (not DICOM, no UIDs) or :class:`~covidviz.errors.XrayInputError`
    (unreadable image), each with a message for the user."""
    header = source_header(data, name)
    reading = read_xray(predictor, read_untrusted(data, name), name, predictor.guard)
    return dicom_results(header, reading, predictor, choice)


def write_results(predictor: Predictor, source: Path, directory: Path,
                  choice: HeatmapChoice = HeatmapChoice()) -> list[Path]:
    """``<stem>.covidviz-sc.dcm`` and ``<stem>.covidviz-sr.dcm`` for the DICOM file ``source``, in
    ``directory`` (created if needed; an existing file is never overwritten: a number is added)."""
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        raise DicomResultError(f"The file cannot be read ({exc.strerror}).") from None
    results = results_for_bytes(predictor, data, Path(source).name, choice)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in results.files(Path(source).stem).items():
        target, n = directory / name, 1
        while target.exists():
            n += 1
            target = directory / name.replace(".covidviz-", f".{n}.covidviz-")
        target.write_bytes(content)
        written.append(target)
    return written

"""Reading DICOM JSON (the QIDO-RS answer format) without building a dataset of each object: only the few
attributes the worklist and archive listing need are taken, the rest (patient attributes among them) dropped."""

from __future__ import annotations

from collections.abc import Mapping

import pydicom


def dicom_json_objects(found: object) -> list[Mapping]:
    """A QIDO-RS answer checked to be DICOM JSON objects (a server's native API may answer the same path with
    something else); ValueError otherwise, which :func:`covidviz.interop.pacs_session.talking_to` reports."""
    if not isinstance(found, list) or not all(isinstance(item, Mapping) for item in found):
        raise ValueError("not a list of DICOM JSON objects")
    return found


def json_value(item: Mapping, keyword: str, default: object = "") -> object:
    """One attribute of a DICOM JSON object (first value), without building a dataset of the whole object."""
    tag = f"{pydicom.datadict.tag_for_keyword(keyword):08X}"
    values = item.get(tag, {}).get("Value") or []
    if not values:
        return default
    first = values[0]
    return first.get("Alphabetic", default) if isinstance(first, dict) else first


def json_values(item: Mapping, keyword: str) -> tuple[str, ...]:
    """Every value of one attribute of a DICOM JSON object, as text."""
    tag = f"{pydicom.datadict.tag_for_keyword(keyword):08X}"
    return tuple(str(v) for v in item.get(tag, {}).get("Value") or [])


def as_int(value: object) -> int | None:
    """An integer attribute value, or None where the server left it out or sent something else."""
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None

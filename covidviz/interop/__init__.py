"""The imaging chain: DICOM result objects (Secondary Capture, Structured Report) and a DICOMweb
connection to a PACS.
"""

from covidviz._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__)

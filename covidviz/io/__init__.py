"""Reading X-ray files: PNG, JPEG and DICOM bytes to one :class:`Xray`, refusing bad input with a message
a reader can act on. Patient identifiers never leave :mod:`covidviz.io.dicom`.
"""

from covidviz._lazy import lazy_exports

_EXPORTS = {
    "Xray": "xray",
    "load_xray": "loading",
    "load_xray_file": "loading",
    "sniff_format": "loading",
    "read_dicom": "dicom",
    "read_raster": "raster",
    "png_bytes": "images",
    "data_uri": "images",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

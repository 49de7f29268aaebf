"""Reading X-ray files: PNG, JPEG and DICOM bytes to one :class:`Xray`, refusing bad input with a message
a reader can act on. Patient identifiers never leave :mod:`covidviz.io.dicom`.
"""

from covidviz._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    xray=("Xray",),
    loading=("load_xray", "load_xray_file", "file_bytes", "sniff_format"),
    isolation=("read_untrusted", "read_untrusted_file", "DecodePool", "decode_pool"),
    dicom=("read_dicom",),
    raster=("read_raster",),
    images=("png_bytes", "data_uri"),
)

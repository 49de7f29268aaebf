"""The image collection (``../shared/cxr``): metadata records, the patient-level split, and offline
non-chest images for testing the out-of-distribution guard.
"""

from covidviz._lazy import lazy_exports

_EXPORTS = {
    "Record": "collection",
    "read_metadata": "collection",
    "load_canonical": "collection",
    "load_prepared": "collection",
    "PreparedSet": "collection",
    "radiologist_labels": "collection",
    "split_records": "split",
    "extend_split": "split",
    "read_split_groups": "split",
    "read_split": "split",
    "write_split": "split",
    "skimage_pictures": "ood_sets",
    "non_chest_dicoms": "ood_sets",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

"""The image collection (``../shared/cxr``): metadata records, the patient-level split, and offline
non-chest images for testing the out-of-distribution guard, and transforms that imitate other acquisitions.
"""

from covidviz._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    collection=("Record", "read_metadata", "load_prepared", "PreparedSet", "radiologist_labels"),
    split=("split_records", "extend_split", "read_split_groups", "read_split", "write_split", "crossval_folds",
           "crossval_split"),
    ood_sets=("skimage_pictures", "non_chest_dicoms", "grayscale_pictures", "documents_and_screens"),
    acquisition=("TRANSFORMS", "check_gray"),
    documents=("rendered_documents",),
)

"""The imaging chain: DICOM result objects (Secondary Capture, Structured Report) and a DICOMweb
connection to a PACS.
"""

from covidviz._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    inputs=("source_header", "HeatmapChoice", "DicomResultError"),
    dicom_results=("dicom_results", "DicomResults", "Algorithm", "ResultFacts", "results_for_bytes",
                   "write_results"),
    part10=("part10",),
    pacs_session=("PacsSettings", "PacsError", "connect"),
    pacs=("study_filters", "search_studies", "find_study",
          "frontal_chest_images", "retrieve", "store", "StudySummary", "ImageRef", "StudyImages"),
    worklist=("score_study", "score_image", "read_image", "results_for", "StudyScore", "ImageScore"),
    orthanc=("LocalOrthanc", "OrthancUnavailable"),
    archive=("archive_source", "PacsArchiveSource", "ArchiveQueryError", "parse_archive_query"),
    sample_dicom=("radiograph_from_png", "example_studies", "Invented"),
)

"""Diagnose: upload chest X-rays, read calibrated probabilities, inspect class activation maps.

The controls render first; the model loads after them (once per server process), so the page is
usable while torch starts.
"""

import streamlit as st

from covidviz.text import plain, safe_csv_bytes
from covidviz.ui.colour_scale import colour_scale
from covidviz.ui.diagnose_settings import settings_panel
from covidviz.ui.model_choice import available_models
from covidviz.ui.pacs_view import opened_from_pacs
from covidviz.ui.resources import get_guard, get_predictor, upload_limit_mb, warm_up, weights_dir
from covidviz.ui.sidebar import disclaimer

st.title("Diagnose")
disclaimer()
uploads = st.file_uploader(
    "Chest X-rays: PNG, JPEG or DICOM (one or many)", accept_multiple_files=True, key="uploads",
    help=f"Up to {upload_limit_mb()} MB per file: enough for an uncompressed 16-bit radiograph from any "
         "common detector, small enough that one upload cannot exhaust the server's memory for everyone else.")
st.caption(f"Files up to {upload_limit_mb()} MB each. Frontal (PA/AP) chest radiographs only. "
           "Images are processed in memory for this session and never stored; DICOM patient data is never shown "
           "(only the DICOM results offered for download carry it, as DICOM requires).")
uploads = [*opened_from_pacs(), *(uploads or [])]  # an image opened from the PACS worklist comes first
folder = weights_dir()
models = available_models(folder)  # sidecars only: the picker shows before torch loads
if len(models) > 1:
    labels = [m.label for m in models]
    picked = models[labels.index(st.selectbox(
        "Model", labels, key="diagnose_model",
        help="The shipped model is the default. The others are on the Model comparison page: backbones trained "
             "on a reduced recipe, and full-recipe candidates that were not shipped; choose one to see how "
             "another model reads the same film."))]
    folder = picked.folder
    if picked.note:
        st.caption(picked.note)
settings = settings_panel(folder)

from covidviz.errors import WeightsError  # noqa: E402  (after the controls are on screen)

try:
    predictor = get_predictor(folder)
    guard = get_guard(folder)
except WeightsError as exc:  # its text names server paths: the log gets it, the page a plain message
    from covidviz.ui.request_log import log_failure
    log_failure("loading the model", exc)
    st.error("The model could not be loaded: its files are missing or fail verification. The server's log "
             "says which; an administrator can restore weights/ from the repository.")
    st.stop()
colour_scale(settings.colormap, settings.style)
if "approximate" in predictor.engine_note:  # INT8: allowed by the deployment, said on every reading
    st.info(f"Inference engine: {predictor.engine_note}. Probabilities may differ slightly from the exact model's.")
else:
    st.caption(f"Inference engine: {predictor.engine_note}.")
if not uploads:
    st.info("Upload one or more chest X-rays to see the model's probabilities and heatmaps.")
    warm_up(folder)
    st.stop()

from covidviz.ui.diagnose_view import read_uploads, render_reading, summary_table  # noqa: E402  (imports torch)

outcomes = read_uploads(predictor, guard, uploads)
if len(outcomes) > 1:
    table = summary_table(outcomes, predictor)
    st.dataframe(table, hide_index=True, key="summary")
    st.download_button("All predictions (CSV)", safe_csv_bytes(table), "covidviz_predictions.csv",
                       "text/csv", key="diagnose_csv")  # names and messages cannot run as spreadsheet formulas
for index, (name, outcome) in enumerate(outcomes):
    if isinstance(outcome, str):
        st.subheader(plain(name))
        st.error(plain(outcome))
    else:
        render_reading(outcome, predictor, settings, index)
    st.divider()

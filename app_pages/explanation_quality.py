"""Explanation quality: how far each heatmap method can be trusted on this model, read from
weights/eval/explanations.json (the model never runs here)."""

import streamlit as st

from covidviz.errors import WeightsError
from covidviz.evaluation.explanation_check.explanations import (
    HOW_TO_MAKE,
    ExplanationsError,
    check_warnings,
    load_explanations,
    sample_text,
)
from covidviz.evaluation.explanation_check.localisation_report import HOW_TO_MAKE as LOCALISATION_HOW_TO_MAKE
from covidviz.evaluation.explanation_check.localisation_report import LocalisationError, load_localisation
from covidviz.text import without_folder
from covidviz.ui import explanation_view
from covidviz.ui.eval_figures import png_config
from covidviz.ui.resources import weights_dir
from covidviz.ui.sidebar import disclaimer
from covidviz.verified import read_sidecar

st.title("Explanation quality")
disclaimer()
folder = weights_dir()
try:
    report = load_explanations(folder)
except ExplanationsError as exc:
    st.warning(without_folder(str(exc), folder))
    st.stop()
try:
    in_use = read_sidecar(folder)["weights_sha256"]
except (WeightsError, KeyError):
    in_use = None
for warning in check_warnings(report, in_use, HOW_TO_MAKE):
    st.warning(warning)

st.markdown(explanation_view.INTRO)
st.info(sample_text(report))
st.markdown(explanation_view.randomisation_words(report))
st.markdown(explanation_view.faithfulness_words(report))
st.markdown(explanation_view.lung_words(report))

number = st.column_config.NumberColumn(format="%.3f")
st.subheader("Every method at a glance")
overview = explanation_view.overview_table(report)
st.dataframe(overview, hide_index=True, key="overview",
             column_config={c: number for c in overview.columns if overview[c].dtype.kind == "f"})

st.subheader("Does the map depend on what the model learned?")
st.markdown(explanation_view.RANDOMISATION_HOW)
st.caption(f"Verdict rule: {report['verdict_rule']}")
st.plotly_chart(explanation_view.cascade_figure(report), config=png_config("explanation_cascade"), key="cascade")
for measure, label in (("spearman", "Mean Spearman rank correlation"), ("ssim", "Mean SSIM")):
    st.markdown(f"**{label}** with the trained model's maps, by stage (empty: stage not run for that method)")
    st.dataframe(explanation_view.cascade_table(report, measure), hide_index=True, key=f"cascade_{measure}",
                 column_config={c["stage"]: number for c in report["cascade"]})

st.subheader("Does the map point at what the prediction rests on?")
st.markdown(explanation_view.ROAD_HOW)
road = explanation_view.road_table(report)
st.dataframe(road, hide_index=True, key="road", column_config={c: number for c in road.columns[1:]})

st.subheader("Where does the model look?")
lungs = explanation_view.lung_table(report)
st.dataframe(lungs, hide_index=True, key="lungs",
             column_config={c: number for c in lungs.columns if c not in ("method", "images with lungs found")})
st.caption("Median share of each map's energy inside the lung segmenter's outline on the image the model reads, "
           "by true class; images without a plausible pair of lungs are left out.")

st.subheader("Does the map point at the radiologists' opacities?")
st.markdown(explanation_view.LOCALISATION_HOW)
try:
    localisation = load_localisation(folder)
except LocalisationError as exc:
    st.caption(without_folder(str(exc), folder))
else:
    for warning in check_warnings(localisation, in_use, LOCALISATION_HOW_TO_MAKE):
        st.warning(warning)
    st.markdown(explanation_view.localisation_words(localisation))
    boxes = explanation_view.localisation_table(localisation)
    st.dataframe(boxes, hide_index=True, key="localisation",
                 column_config={c: number for c in boxes.columns if boxes[c].dtype.kind == "f"})
    st.caption("Pointing game: share of films whose map peak lies inside a box. Energy: median share of the map "
               "inside the boxes; the even lung map spreads it evenly over the segmented lungs. Difference: median "
               "per-film energy minus even-lung share. The boxes also cover normal lung, so no map reaches 100%.")

"""The model card's recipe ablation, rendered from ``weights/eval/ablation.json`` (``scripts/recipe_ablation.py``)."""

from __future__ import annotations

from typing import Any

from covidviz.evaluation.documents.facts import fmt_ci, fmt_difference
from covidviz.evaluation.documents.shift_facts import STRONG_SHIFT

GRAIN = "grain_noise"
VIEW_NAMES = {"flip": "the field and its mirror", "crops": "the field and five crops of 0.9"}


def _when(row: dict[str, Any]) -> str:
    """Which weights of the source: a run's epoch, a weight average's member count, what else made a checkpoint
    (a head refit), or the shipped hash."""
    if row.get("members"):
        return " & ".join(_when(member) for member in row["members"])
    if row.get("epoch") is not None:
        return f"epoch {row['epoch']}"
    if row.get("averaged"):
        return f"weight average of {row['averaged']}"
    if row.get("made_by"):
        return str(row["made_by"])
    return f"`{row.get('weights_sha256', '?')[:12]}`"


def _model(row: dict[str, Any], shipped_sha256: str | None) -> str:
    when = _when(row)
    as_shipped = (row.get("pooling", "image") == "image" and not row.get("low_pass_sigma")  # read as shipped
                  and not row.get("views") and not row.get("members"))
    shipped = " **(shipped)**" if as_shipped and shipped_sha256 and row.get("weights_sha256") == shipped_sha256 else ""
    return f"{row['name']}{shipped}<br>`{row['source']}`, {when}"


def _flip_cells(shift: dict[str, Any] | None) -> list[str]:
    if not shift:
        return ["not measured"] * 3
    flipped, films = shift["flipped"], shift["films"]
    total, n = sum(flipped.values()), films * len(flipped)
    return [f"{flipped.get(GRAIN, 0)} of {films}", f"{flipped.get(STRONG_SHIFT, 0)} of {films}",
            f"{total} of {n:,} ({total / n:.1%})"]


def ablation_lines(report: dict[str, Any] | None, shipped_sha256: str | None = None) -> list[str]:
    """Markdown: what each recipe gave on the validation films, each figure with its 95% interval and its paired
    difference against the first row. Nothing before the ablation has been run."""
    if not report or not report.get("rows"):
        return []
    first = report["rows"][0]["name"]
    lines = ["## Recipe ablation (validation films only)",
             f"Every model read the same {report['films']:,} validation films (`scripts/recipe_ablation.py`); "
             "test and external films were not read, so nothing was chosen by them. Macro F1 under the "
             f"{report['rule']} rule; COVID-19 ROC AUC within SIIM ({report['siim_films']} films of one source, so "
             "source cannot stand in for class); the median share of the predicted class's Grad-CAM energy inside "
             f"the lung mask ({report['films_with_lungs']:,} films with lungs found), where a map spread evenly over "
             f"the lung field puts {report['even_map_lung_share']:.2f}. Brackets: 95% bootstrap intervals "
             f"({report['bootstrap_resamples']} resamples); each difference is against {first} on the same "
             "resamples. Class flips: of the validation films `measure-shift` draws, read clean and through each "
             "acquisition transform at full strength (the same films and seeds for every row), how many change "
             "class under argmax; the model card's Acquisition shift section has the shipped model's under its "
             "decision rule, with intervals. Pneumonia recall under argmax for adults (NIH, ieee8023) and children "
             "(Kermany) apart, where the row was read since the table had it (—: read before). An ensemble or "
             "test-time views average every forward pass's probabilities, and draw the mean of the passes' maps, "
             "each carried back onto the lung field; a weight average is one model, at one pass.",
             "",
             "| recipe | input, map | macro F1 | vs first | within-SIIM AUC | vs first | lung energy | vs first | "
             "pneumonia recall: adults | children | class flips: grain | digitised film | all six transforms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        pooled = "; pooled over the lungs" if row.get("pooling") == "lungs" else ""
        if row.get("low_pass_sigma"):
            pooled += f"; low-pass front end (Gaussian, σ {row['low_pass_sigma']:g} px)"
        members, views = len(row.get("members") or [None]), row.get("view_passes", 1)
        if members > 1:
            pooled += f"; ensemble of {members}"
        if row.get("views"):
            pooled += f"; test-time views: {VIEW_NAMES.get(row['views'], row['views'])}"
        if members * views > 1:
            pooled += f" ({members * views} forward passes a film)"
        cells = [_model(row, shipped_sha256),
                 f"{row['architecture']}, {row['input_size']} px, {row['feature_map'][0]} x {row['feature_map'][1]}"
                 + pooled]
        for name in ("macro_f1", "siim_covid_auc", "lung_energy_median"):
            cells += [fmt_ci(row[name]), fmt_difference(row[name].get("vs_first"))]
        recall = row.get("pneumonia_recall") or {}
        cells += [f"{recall[g]['recalled']} of {recall[g]['n']}" if g in recall else "—" for g in ("adults", "children")]
        cells += _flip_cells(row.get("shift"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]

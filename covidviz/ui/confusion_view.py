"""Words for the confusion-matrix page: what each view means, and why every number is split by source."""

from __future__ import annotations

import numpy as np

from covidviz import CLASSES
from covidviz.evaluation.artifacts.saved import SplitPredictions
from covidviz.evaluation.measures.age_groups import pneumonia_recall_by_age, recall_sentence
from covidviz.evaluation.measures.metrics import confusion_matrix
from covidviz.model.decision import ARGMAX_RULE, DecisionRule

VIEW_CAPTIONS = {
    "counts": "Rows are the true class, columns the model's prediction (by the decision rule picked above). "
              "The diagonal holds the correct calls.",
    "recall": "Each row divided by its total: the diagonal is each class's sensitivity (recall), the other cells "
              "say what the missed images were called instead. A row without images shows –.",
    "precision": "Each column divided by its total: the diagonal is each class's precision (PPV), the other cells "
                 "say what a call of that class really was. A class never predicted shows –.",
}

CONFOUNDING = (
    "In these public collections **the class leans on the source**. All pediatric images (Kermany, children aged "
    "1–5) are normal or pneumonia, never COVID-19; NIH adds adult normal and pneumonia images; most non-SIIM "
    "COVID-19 images are figures from papers and web collections (ieee8023, COVID-CXNet, the Radiopaedia/SIRM "
    "scrape), often cropped, annotated or compressed. A model can therefore score well by recognising a child's "
    "chest, a journal figure or burnt-in text instead of disease. **SIIM** is the one large source holding COVID-19 "
    "films and radiographically negative films from the same hospitals: its row (and the within-SIIM ROC AUC on "
    "the About page) says whether the model reads the lungs. Compare the rows of the table above: a class that a "
    "source lacks cannot be confused within it.")

EXTERNAL_NOTE = (
    "The external sets come from two hospitals the pool never saw, one class each: **Hannover** (COVID-19 only) "
    "measures sensitivity, the share of its row called COVID-19; **Shenzhen** (normals only) measures specificity, "
    "the share of its row not called COVID-19. Pick a source above to see each alone; their pooled precision "
    "depends only on how many films each set happens to hold.")


RULES = {"decision": "The model's decision rule", "argmax": "Argmax (the most probable class)"}
RULE_CAPTIONS = {
    "decision": "The model's decision rule, as Diagnose, predict, batch and the DICOM SR apply it: {rule}. Counted "
                "here from the saved predictions; the table below stays on the argmax rule with its intervals.",
    "argmax": "The argmax rule (the class with the highest probability), as in metrics.json and the table below.",
}


def rule_options(rule: DecisionRule) -> list[str]:
    """The model's own rule first when it is not argmax, then argmax for comparison."""
    return ["argmax"] if rule.covid_threshold is None else ["decision", "argmax"]


def rule_confusion(predictions: SplitPredictions, rule: DecisionRule, source: str | None) -> np.ndarray:
    """The confusion matrix of ``rule`` on a split's saved predictions (one source, or all): no model runs."""
    rows = predictions.subset(source)
    return confusion_matrix(rows.y_true, rule.indices(rows.probs) if rows.n else np.zeros(0, int), len(CLASSES))


def comparison_markdown(metrics: dict) -> str:
    """The headline table of the model card (this model beside the previous one) with its counts, and where the
    maps fall per split and class beside an even spread over the same lungs, where the artifacts record it."""
    from covidviz.evaluation.documents.facts import comparison_table, counts_line, lung_energy_table
    lungs = lung_energy_table(metrics)
    return ("\n".join(comparison_table(metrics)) + "\n\n" + counts_line(metrics)
            + ("\n\nMedian share of the predicted class's Grad-CAM energy inside the lung mask, beside a map spread "
               "evenly over the same masks:\n\n" + "\n".join(lungs) if lungs else ""))


def age_recall_caption(predictions: SplitPredictions, rule: DecisionRule | None, source: str | None) -> str | None:
    """Pneumonia recall for adults and children apart under ``rule`` (None: argmax), for the rows shown; None
    where they hold no pneumonia film (the external sets)."""
    rows = predictions.subset(source)
    recalls = pneumonia_recall_by_age(rows.sources, rows.y_true, (rule or ARGMAX_RULE).indices(rows.probs))
    if not recalls:
        return None
    pooled_note = " The pooled pneumonia recall above is mostly the children's." if len(recalls) == 2 else ""
    return recall_sentence(recalls) + pooled_note

"""How often the model gives no class, and what it would have said (pure).

An image gets no class when it is out of distribution or no plausible pair of lungs is found
(:func:`covidviz.model.decision.abstention_reason`). On real chest films every abstention costs an answer; the
count of abstained films the rule would have called right says how many of those answers were worth having.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from covidviz.model.decision import DecisionRule


def abstention_summary(y_true: np.ndarray, probs: np.ndarray, ood_distance: np.ndarray, lungs_plausible: np.ndarray,
                       ood_threshold: float, rule: DecisionRule) -> dict[str, Any]:
    """Counts for one set: images, abstentions (and by which check), the share abstained, and how many of the
    abstained films ``rule`` would have called right."""
    y_true = np.asarray(y_true, int)
    far = np.asarray(ood_distance, float) > ood_threshold
    no_lungs = ~np.asarray(lungs_plausible, bool)
    abstained = far | no_lungs
    right = rule.indices(probs) == y_true if len(y_true) else np.zeros(0, bool)
    n = int(len(y_true))
    return {"n": n, "abstained": int(abstained.sum()), "rate": float(abstained.mean()) if n else None,
            "out_of_distribution": int(far.sum()), "no_plausible_lungs": int(no_lungs.sum()),
            "abstained_right": int((abstained & right).sum()),
            "answered_accuracy": float(right[~abstained].mean()) if (~abstained).any() else None}

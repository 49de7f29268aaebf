"""The README's facts block and the model card are what the shipped artifacts say, to the character."""

from __future__ import annotations

import pytest

from covidviz.evaluation.documents.facts import (
    BEGIN,
    END,
    FACTS_BLOCK,
    comparison_table,
    load_artifacts,
    lung_energy_table,
    readme_block,
)
from covidviz.evaluation.documents.model_card import render_model_card
from tests.conftest import ROOT, WEIGHTS


def test_readme_block_is_generated_from_the_shipped_artifacts():
    sidecar, metrics, lungs = load_artifacts(WEIGHTS)
    assert FACTS_BLOCK.current((ROOT / "README.md").read_text()) == readme_block(sidecar, metrics, lungs), \
        "README facts are stale: run `python -m covidviz facts`"


def test_model_card_is_generated_from_the_shipped_artifacts():
    sidecar, metrics, lungs = load_artifacts(WEIGHTS)
    assert (WEIGHTS / "MODEL_CARD.md").read_text() == render_model_card(sidecar, metrics, lungs), \
        "MODEL_CARD.md is stale: run `python -m covidviz facts`"


def test_comparison_rows_show_both_models_and_missing_values_as_na():
    metrics = {"reads_the_lungs": {"external": {"hannover_covid_sensitivity": {"value": 0.9123, "ci95": [0.87, 0.95]}},
                                   "lung_energy": {"test": {"median": 0.834}}},
               "previous": {"external": {"hannover_covid_sensitivity": {"value": 0.963, "ci95": [None, None]}}}}
    rows = comparison_table(metrics)
    hannover = next(r for r in rows if r.startswith("| External: Hannover"))
    assert hannover == "| External: Hannover COVID-19 sensitivity | >= 0.90 | 0.912 (0.870–0.950) | 0.963 |"
    assert rows[-1].endswith("| >= 0.80 | 0.83 | n/a |")
    assert all(r.count("n/a") == 2 for r in rows if r.startswith("| Within SIIM"))


def test_lung_energy_rows_put_the_even_spread_beside_each_split_and_class():
    def summary(median, covid, normal, n=10):
        return {"median": median, "n_with_lungs": n, "n": n + 1,
                "by_class": {"covid": covid, "pneumonia": None, "normal": normal}}
    metrics = {"reads_the_lungs": {"lung_energy": {"test": summary(0.72, 0.76, 0.59)},
                                   "lung_area_share": {"test": summary(0.43, 0.44, 0.42)}},
               "previous": {"lung_energy": {"test": summary(0.76, 0.75, 0.77)}}}
    rows = lung_energy_table(metrics)
    assert rows[2] == "| Internal test | all | 10 | 0.72 | 0.43 | 0.76 |"
    assert rows[3] == "|  | COVID-19 |  | 0.76 | 0.44 | 0.75 |"
    assert rows[4] == "|  | Normal |  | 0.59 | 0.42 | 0.77 |"  # no pneumonia films in the split: no row
    assert len(rows) == 2 + 3  # only the splits measured
    del metrics["reads_the_lungs"]["lung_area_share"]
    assert lung_energy_table(metrics) == []  # written before the even spread was recorded: no half table


def test_shipped_card_puts_lung_energy_beside_the_even_spread_per_split():
    _, metrics, _ = load_artifacts(WEIGHTS)
    even = metrics["reads_the_lungs"].get("lung_area_share")
    assert even, "metrics.json has no even spread: run `python -m covidviz evaluate`"
    assert set(even) == {"val", "test", "external"}
    assert all(0 < even[s]["median"] < 1 for s in even)
    assert "\n".join(lung_energy_table(metrics)) in (WEIGHTS / "MODEL_CARD.md").read_text()


def test_replace_block_needs_its_markers():
    text = f"intro\n{BEGIN}\nold\n{END}\noutro"
    assert FACTS_BLOCK.replace(text, f"{BEGIN}\nnew\n{END}") == f"intro\n{BEGIN}\nnew\n{END}\noutro"
    with pytest.raises(ValueError, match="no generated block"):
        FACTS_BLOCK.replace("no markers here", "x")


def test_readme_comparison_block_is_generated_from_the_committed_comparison():
    from covidviz.evaluation.artifacts.saved import load_comparison
    from covidviz.evaluation.documents.comparison_facts import COMPARISON_BLOCK, comparison_block
    shown = COMPARISON_BLOCK.current((ROOT / "README.md").read_text())
    assert shown == comparison_block(load_comparison(WEIGHTS)), \
        "README comparison is stale: run `python -m covidviz compare-build`"
    with pytest.raises(ValueError, match="no generated block"):
        COMPARISON_BLOCK.replace("no markers", shown)


def test_model_card_shows_the_measured_acquisition_shift():
    from covidviz.evaluation.documents.shift_facts import shift_lines
    sidecar, metrics, _ = load_artifacts(WEIGHTS)
    shift = metrics.get("shift")
    assert shift is not None, "weights/eval/shift.json is missing: run `python -m covidviz measure-shift`"
    assert shift["weights_sha256"] == sidecar["weights_sha256"], "shift.json measures another model"
    section = "\n".join(shift_lines(shift, metrics.get("shift_previous"), sidecar["weights_sha256"]))
    assert section.startswith("## Acquisition shift")
    assert section in (WEIGHTS / "MODEL_CARD.md").read_text()


def _shift(flipped: int, sha: str = "aa" * 32, films: int = 300) -> dict:
    rate = {"mean": flipped / films, "ci95": [0.0, 0.5]}
    common = {"films": films, "flagged_ood": 0.1, "no_plausible_lungs": 0.0, "abstained": 0.1}
    return {"weights_sha256": sha, "sample": {"films": films, "drawn": "seed 20"},
            "transforms": {"clean": {**common, "flipped": 0, "flip_rate": {"mean": 0.0, "ci95": [0, 0]}},
                           "digitised_film": {**common, "flipped": flipped, "flip_rate": rate}}}


def test_shift_section_puts_the_previous_model_beside_as_before_only_on_the_same_sample():
    from covidviz.evaluation.documents.shift_facts import shift_lines
    before = {**_shift(90, "bb" * 32), "folder": "weights/history/v2"}
    before["sample"] = {**before["sample"], "seconds": 573}  # timing is not part of what was read
    lines = shift_lines(_shift(30), before, "aa" * 32)
    row = next(line for line in lines if line.startswith("| digitised film"))
    assert row.startswith("| digitised film (curve, grain, blur, uneven light, film edge) | 90 of 300: ")
    assert "| 30 of 300: " in row and "weights/history/v2" in "\n".join(lines)
    other_sample = {**_shift(90, "bb" * 32, films=200), "folder": "weights/history/v2"}
    alone = "\n".join(shift_lines(_shift(30), other_sample, "aa" * 32))
    assert "90 of 200" not in alone and "waits for that retraining" in alone


def test_shift_section_warns_when_it_measured_another_model():
    from covidviz.evaluation.documents.shift_facts import shift_lines
    assert "computed for model aaaaaaaaaaaa" in "\n".join(shift_lines(_shift(30), None, "cc" * 32))
    assert "computed for model" not in "\n".join(shift_lines(_shift(30), None, "aa" * 32))

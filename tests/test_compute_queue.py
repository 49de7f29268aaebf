"""The server's compute queue: never more than its slots at once, readings before explanations and otherwise first
come first served, positions told, and a waiter that is interrupted leaves the queue."""

from __future__ import annotations

import threading
import time

import pytest

from covidviz.ui.compute_queue import EXPLANATION, READING, ComputeQueue


def test_at_most_its_slots_run_and_waiters_go_in_arrival_order():
    queue = ComputeQueue(slots=1)
    order, peak, lock = [], [0], threading.Lock()
    inside = [0]

    def job(name: str) -> None:
        with queue.slot(poll=0.01):
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
                order.append(name)
            time.sleep(0.05)
            with lock:
                inside[0] -= 1

    threads = []
    for name in "abcde":
        threads.append(threading.Thread(target=job, args=(name,)))
        threads[-1].start()
        time.sleep(0.01)  # arrive in this order
    for t in threads:
        t.join()
    assert peak[0] == 1 and order == list("abcde")
    assert queue.running == 0 and queue.waiting == 0


def test_readings_go_before_explanations_that_came_earlier_and_each_kind_keeps_its_order():
    queue = ComputeQueue(slots=1)
    release, order, places = threading.Event(), [], {}

    def holder() -> None:
        with queue.slot(poll=0.01):
            release.wait(5)

    def job(name: str, priority: int) -> None:
        with queue.slot(lambda p: places.setdefault(name, []).append(p), poll=0.01, priority=priority):
            order.append(name)

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    time.sleep(0.05)
    for name, priority in (("explain1", EXPLANATION), ("explain2", EXPLANATION), ("read1", READING), ("read2", READING)):
        threads.append(threading.Thread(target=job, args=(name, priority)))
        threads[-1].start()
        time.sleep(0.05)
    assert places["explain1"][0] == 1 and places["explain1"][-1] == 3  # two readings moved ahead of it
    assert places["read1"][-1] == 1 and places["read2"][-1] == 2
    release.set()
    for t in threads:
        t.join(5)
    assert order == ["read1", "read2", "explain1", "explain2"]
    assert queue.running == 0 and queue.waiting == 0


def test_two_slots_let_two_run_at_once():
    queue = ComputeQueue(slots=2)
    inside, peak, lock, start = [0], [0], threading.Lock(), threading.Barrier(4)

    def job() -> None:
        start.wait()
        with queue.slot(poll=0.01):
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.1)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=job) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2


def test_waiters_are_told_their_position_and_an_interrupted_one_frees_its_place():
    queue = ComputeQueue(slots=1)
    release = threading.Event()
    seen: dict[str, list[int]] = {"second": [], "third": []}
    finished = []

    def holder() -> None:
        with queue.slot(poll=0.01):
            release.wait(5)

    class LeftThePage(Exception):
        pass

    def second() -> None:
        def on_wait(position: int) -> None:
            seen["second"].append(position)
            if len(seen["second"]) >= 5:
                raise LeftThePage  # what Streamlit does to a session whose user changed the input
        with pytest.raises(LeftThePage):
            with queue.slot(on_wait, poll=0.01):
                finished.append("second")

    def third() -> None:
        with queue.slot(lambda p: seen["third"].append(p), poll=0.01):
            finished.append("third")

    h = threading.Thread(target=holder)
    h.start()
    time.sleep(0.05)
    s = threading.Thread(target=second)
    s.start()
    time.sleep(0.02)
    t = threading.Thread(target=third)
    t.start()
    s.join(5)
    time.sleep(0.05)
    assert seen["second"][0] == 1 and 2 in seen["third"]
    assert seen["third"][-1] == 1  # moved up when the second one left
    release.set()
    h.join(5)
    t.join(5)
    assert finished == ["third"] and queue.waiting == 0 and queue.running == 0


def test_a_failing_job_releases_its_slot():
    queue = ComputeQueue(slots=1)
    with pytest.raises(RuntimeError):
        with queue.slot():
            raise RuntimeError("model failed")
    with queue.slot(poll=0.01):
        assert queue.running == 1
    assert queue.running == 0


def test_zero_slots_is_a_clear_error():
    with pytest.raises(ValueError, match="at least one slot"):
        ComputeQueue(0)


def test_the_waiting_message_says_the_place_and_how_to_give_it_up():
    from covidviz.ui.compute_queue import waiting_message
    assert "1 request ahead" in waiting_message("Reading x.png", 1)
    assert "3 requests ahead" in waiting_message("Score-CAM for COVID-19", 3)
    assert "gives it up" in waiting_message("Reading x.png", 2)


def test_a_job_past_the_limit_loses_its_slot_and_the_next_runs():
    """A job that never ends (a hostile input would once have been one) must not hold the queue: the next
    session runs once the limit has passed, and the overrunning job is told when it finally ends."""
    queue = ComputeQueue(slots=1, limit=0.3)
    release, held = threading.Event(), threading.Event()
    outcome = {}

    def hostile() -> None:
        with queue.slot(poll=0.01) as job:
            held.set()
            release.wait(30)
        outcome["hostile_overran"] = job.overran

    def normal() -> None:
        held.wait(5)
        began = time.monotonic()
        with queue.slot(poll=0.01) as job:
            outcome["normal_waited"] = time.monotonic() - began
        outcome["normal_overran"] = job.overran

    threads = [threading.Thread(target=hostile), threading.Thread(target=normal)]
    for t in threads:
        t.start()
    threads[1].join(10)
    assert not threads[1].is_alive(), "the second session is still waiting behind the job that never ends"
    assert 0.2 <= outcome["normal_waited"] < 5 and outcome["normal_overran"] is False
    assert queue.running == 0  # the overrunning job no longer counts against the slot
    release.set()
    threads[0].join(10)
    assert outcome["hostile_overran"] is True
    assert queue.running == 0 and queue.waiting == 0


def test_a_job_within_the_limit_is_not_set_aside():
    queue = ComputeQueue(slots=1, limit=5)
    with queue.slot(poll=0.01) as job:
        time.sleep(0.05)
    assert job.overran is False
    with pytest.raises(ValueError, match="positive"):
        ComputeQueue(1, limit=0)

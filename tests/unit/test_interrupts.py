"""A Ctrl-C during a tracking write lands when the write is done (smallvision.interrupts), in this process."""

from __future__ import annotations

import os
import signal
import time

import pytest

from smallvision.interrupts import ctrl_c_held_back, reliable_ctrl_c
from smallvision.tracking.tracker import StudyTracker


def _ctrl_c_to_self() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # the handler runs here, on the main thread, before the next line


@pytest.fixture
def ctrl_c_raises():
    """Ctrl-C as the entry scripts set it up (`reliable_ctrl_c`), restored afterwards."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    reliable_ctrl_c()
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_during_a_tracking_write_lands_when_the_write_is_done(tmp_path, ctrl_c_raises):
    tracker = StudyTracker(f"sqlite:///{tmp_path.as_posix()}/mlflow.db", "smallvision", "key", "study")
    done = []

    def write() -> str:
        run_id = tracker.runs.start_child("baseline", {}, {})
        _ctrl_c_to_self()  # mid-way through the store's writes
        tracker.client.log_metric(run_id, "val_accuracy", 0.5)
        done.append(run_id)
        return run_id

    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        tracker.guarded(write)
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C is handled as before the write
    assert len(done) == 1  # the write ran to its end first
    assert tracker.enabled  # and the store is still usable: the run ends at once, with its metric
    started = time.monotonic()
    tracker.runs.end(done[0], "KILLED")
    assert time.monotonic() - started < 5  # not MLflow's 20 s SQLite busy timeout
    run = tracker.client.get_run(done[0])
    assert run.info.status == "KILLED" and run.data.metrics == {"val_accuracy": 0.5}
    with pytest.raises(KeyboardInterrupt):  # and raises again at once
        _ctrl_c_to_self()


def test_a_ctrl_c_during_a_failing_write_is_not_lost_with_the_error(ctrl_c_raises):
    def fail() -> None:
        _ctrl_c_to_self()
        raise OSError("store gone")

    with pytest.raises(KeyboardInterrupt) as caught, ctrl_c_held_back():
        fail()
    assert isinstance(caught.value.__context__, OSError)
    with ctrl_c_held_back():  # no Ctrl-C, nothing raised
        pass


def test_ctrl_c_is_left_alone_where_it_does_not_raise(ctrl_c_raises):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # e.g. a background job
    with ctrl_c_held_back():
        _ctrl_c_to_self()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN

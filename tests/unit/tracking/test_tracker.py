"""MLflow study/technique runs, queried back from a real SQLite store."""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
from pathlib import Path

import pytest
from helpers.tracking import broken_sqlite_uris, make_tracker, runs_of, tracking_warnings
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from smallvision.entrypoints import bound_mlflow_requests
from smallvision.tracking import COMPARISON_FILE, STUDY_KEY_TAG, flatten, lightning_logger

# -- parent/child structure ----------------------------------------------------------------


def test_techniques_of_one_study_share_one_parent(store_uri: str, experiment: str) -> None:
    params = flatten({"techniques": {"baseline": {"optimizer": {"lr": 1e-4}}}, "seed": 42})
    child_ids = []
    for technique in ("baseline", "augment"):
        # a fresh tracker per technique, as each DVC stage is its own process
        tracker = make_tracker(store_uri, experiment)
        with tracker.technique_run(
            technique, params, {"backbone": "none", "seed": "42", "git_commit": "deadbeef"}
        ) as run_id:
            assert run_id is not None
            tracker.log_metrics(run_id, {"test_accuracy": 0.75})
        child_ids.append(run_id)
    other = make_tracker(store_uri, experiment, key="study/synthetic/other")
    with other.technique_run("baseline", {}, {}):
        pass

    runs = {r.info.run_id: r for r in runs_of(store_uri, experiment)}
    parents = [r for r in runs.values() if MLFLOW_PARENT_RUN_ID not in r.data.tags]
    assert len(runs) == 5 and len(parents) == 2
    first_parent = runs[runs[child_ids[0]].data.tags[MLFLOW_PARENT_RUN_ID]]
    assert first_parent.info.run_name == "chollet"
    assert first_parent.data.tags[STUDY_KEY_TAG] == "study/synthetic/abc123"
    assert first_parent.info.status == "FINISHED"
    for run_id, technique in zip(child_ids, ("baseline", "augment")):
        child = runs[run_id]
        assert child.data.tags[MLFLOW_PARENT_RUN_ID] == first_parent.info.run_id
        assert child.info.run_name == technique and child.info.status == "FINISHED"
        assert child.data.params["techniques.baseline.optimizer.lr"] == "0.0001"
        assert child.data.params["seed"] == "42"
        assert {
            "technique": technique,
            "backbone": "none",
            "seed": "42",
            "git_commit": "deadbeef",
            "dataset": "synthetic",
        }.items() <= child.data.tags.items()
        assert child.data.metrics["test_accuracy"] == 0.75
    assert other.parent_run_id not in (None, first_parent.info.run_id)
    assert runs[other.parent_run_id].info.run_name == "chollet"


def test_study_key_with_quotes_is_found_again(store_uri: str, experiment: str) -> None:
    key = 'Chollet\'s "study"/x'
    parents = set()
    for _ in range(2):
        tracker = make_tracker(store_uri, experiment, key=key)
        with tracker.technique_run("baseline", {}, {}):
            pass
        parents.add(tracker.parent_run_id)
    assert len(parents) == 1


@pytest.mark.parametrize(
    ("error", "status"), [(KeyboardInterrupt, "KILLED"), (SystemExit, "KILLED"), (RuntimeError, "FAILED")]
)
def test_interrupted_or_failed_job_status(store_uri: str, experiment: str, error: type, status: str) -> None:
    tracker = make_tracker(store_uri, experiment)
    with pytest.raises(error), tracker.technique_run("augment", {}, {}) as run_id:
        raise error()
    client = MlflowClient(store_uri)
    assert client.get_run(run_id).info.status == status
    assert client.get_run(tracker.parent_run_id).info.status == status


def test_comparison_lands_on_the_parent(store_uri: str, experiment: str, tmp_path: Path) -> None:
    tracker = make_tracker(store_uri, experiment)
    with tracker.technique_run("baseline", {}, {}) as child_id:
        pass
    chart = tmp_path / "comparison.md"
    chart.write_text("| technique | accuracy |\n")
    rows = [
        {"technique": "baseline", "test_accuracy": 0.71, "backbone": "none"},
        {"technique": "fine_tune", "test_accuracy": 0.97, "ci95_low": 0.95},
    ]
    # visualize is another process: a new tracker finds the parent by key
    later = make_tracker(store_uri, experiment)
    later.log_comparison(rows, [chart])
    later.log_comparison(rows, [chart])  # rerun: the table is rewritten, not appended
    assert later.parent_run_id == tracker.parent_run_id

    client = MlflowClient(store_uri)
    parent = client.get_run(tracker.parent_run_id)
    assert parent.data.metrics == {
        "baseline.test_accuracy": 0.71,
        "fine_tune.test_accuracy": 0.97,
        "fine_tune.ci95_low": 0.95,
    }
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {COMPARISON_FILE, "comparison.md"}
    table = json.loads(Path(client.download_artifacts(parent.info.run_id, COMPARISON_FILE, str(tmp_path))).read_text())
    assert table["columns"] == ["technique", "test_accuracy", "backbone", "ci95_low"]
    assert table["data"] == [["baseline", 0.71, "none", None], ["fine_tune", 0.97, None, 0.95]]
    assert client.list_artifacts(child_id) == []


def test_the_dvc_metrics_file_and_the_study_run_carry_the_same_numbers(
    store_uri: str, experiment: str, tmp_path: Path
) -> None:
    from smallvision.visualize.comparison import write_comparison_metrics

    rows = [
        {"technique": "baseline", "test_accuracy": 0.65, "seed": 42, "preset": "quick"},
        {"technique": "augment", "test_accuracy": 0.75, "step_from": "baseline", "step_p_value": 0.041, "step_lost": 5},
    ]
    saved = json.loads(write_comparison_metrics(rows, tmp_path / "metrics" / "comparison.json").read_text())
    assert saved == {
        "baseline": {"test_accuracy": 0.65, "seed": 42},
        "augment": {"test_accuracy": 0.75, "step_p_value": 0.041, "step_lost": 5},
    }
    tracker = make_tracker(store_uri, experiment)
    tracker.log_comparison(rows)
    logged = MlflowClient(store_uri).get_run(tracker.parent_run_id).data.metrics
    # what `dvc metrics show` flattens the file to, key for key
    assert logged == {
        f"{technique}.{key}": value for technique, values in saved.items() for key, value in values.items()
    }


# -- failures: training goes on ------------------------------------------------------------


def train_tracked(root: Path, uri: str, models: Path, callbacks=()) -> dict:
    """A real training job (pipelines/train.py's path: run_training) tracked to `uri`, its outputs in `models`;
    `callbacks` join the Lightning Trainer's."""
    from helpers.study import add_callbacks, config

    from smallvision.job import run_training

    cfg = config(
        "technique=baseline",
        "techniques.baseline.epochs=2",
        "logger.enabled=true",
        f"logger.tracking_uri={uri}",
        f"paths.models={models}",
    )
    with pytest.MonkeyPatch.context() as patch:
        add_callbacks(patch, *callbacks)
        return run_training(cfg, root)


def assert_finished_outputs(folder: Path, metrics: dict) -> None:
    """The DVC outputs of a finished training job."""
    assert json.loads((folder / "metrics.json").read_text()) == metrics and metrics["test_images"] == 4
    assert len((folder / "history.csv").read_text().splitlines()) == 3  # header + 2 epochs
    assert len((folder / "test_predictions.csv").read_text().splitlines()) == 5
    assert (folder / "best.ckpt").stat().st_size > 0 and (folder / "confusion.json").exists()


@pytest.mark.parametrize("case", ["not_a_database", "folder_is_a_file"])
def test_unwritable_store_warns_once_and_training_writes_its_outputs(
    tiny_study: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    uri = broken_sqlite_uris(tmp_path)[case]
    with caplog.at_level(logging.WARNING):
        metrics = train_tracked(tiny_study, uri, tmp_path / "models")
    assert_finished_outputs(tmp_path / "models" / "baseline", metrics)
    (warning,) = tracking_warnings(caplog)
    message = warning.getMessage()
    assert message.startswith(f"MLflow tracking at {uri} failed: ")
    assert f"training continues, metrics are in {tmp_path / 'models'}/baseline/metrics.json" in message
    assert "log them later with: python pipelines/log_metrics.py technique=baseline" in message


class LockStoreAfterFirstEpoch:
    """Another connection takes an exclusive SQLite transaction on the store when epoch 1 ends (its metrics are
    logged by then) and holds it until released: every later write waits MLflow's busy timeout (20 s), then fails."""

    def __init__(self, db: Path) -> None:
        self.db, self.connection = db, None

    def callback(self):
        import lightning as L

        owner = self

        class Lock(L.Callback):
            def on_train_epoch_end(self, trainer, module) -> None:
                if owner.connection is None:
                    owner.connection = sqlite3.connect(owner.db, isolation_level=None)
                    owner.connection.execute("BEGIN EXCLUSIVE")

        return Lock()

    def release(self) -> None:
        if self.connection is not None:
            self.connection.rollback()
            self.connection.close()


def test_a_store_locked_mid_training_warns_once_and_training_writes_its_outputs(
    tiny_study: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> None:
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db.as_posix()}"
    lock = LockStoreAfterFirstEpoch(db)
    try:
        with caplog.at_level(logging.WARNING):
            metrics = train_tracked(tiny_study, uri, tmp_path / "models", [lock.callback()])
    finally:
        lock.release()
    assert lock.connection is not None  # the store was locked while training ran
    assert_finished_outputs(tmp_path / "models" / "baseline", metrics)
    (warning,) = tracking_warnings(caplog)
    assert "database is locked" in warning.getMessage()
    assert "python pipelines/log_metrics.py technique=baseline" in warning.getMessage()
    assert "Traceback" not in capfd.readouterr().err  # one warning, not MLflow's stack trace
    (child,) = [r for r in runs_of(uri, "smallvision") if MLFLOW_PARENT_RUN_ID in r.data.tags]
    history = MlflowClient(uri).get_metric_history(child.info.run_id, "val_acc")
    assert [m.step for m in history] == [1]  # epoch 1 was logged before the lock, nothing after it


def test_unreachable_server_fails_fast_without_leaking_credentials(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for name in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
        monkeypatch.setenv(name, "unset-by-test")  # so monkeypatch restores the real value afterwards
        monkeypatch.delenv(name)
    from helpers.study import config

    logger = config().logger.model_copy(update={"http_timeout_s": 1.5, "http_max_retries": 0})
    bound_mlflow_requests(logger)  # what the entry scripts do first
    tracker = make_tracker(f"http://user:secret@127.0.0.1:{port}", "exp")
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "2" and os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    with caplog.at_level(logging.WARNING), tracker.technique_run("baseline", {}, {}) as run_id:
        pass
    assert run_id is None
    (warning,) = tracking_warnings(caplog)
    assert f"MLflow tracking at http://127.0.0.1:{port} failed" in warning.getMessage()
    assert "secret" not in warning.getMessage()


def test_disabled_tracker_touches_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "never.db"
    tracker = make_tracker(f"sqlite:///{db.as_posix()}", "exp", enabled=False)
    with caplog.at_level(logging.WARNING):
        with tracker.technique_run("baseline", {}, {}) as run_id:
            tracker.log_metrics(run_id, {"a": 1.0})
        tracker.log_comparison([{"technique": "baseline", "test_accuracy": 1.0}])
    assert run_id is None and lightning_logger(tracker, run_id) is None
    assert not db.exists() and not tracking_warnings(caplog)


# -- Lightning's MLFlowLogger on the child run ---------------------------------------------


# -- helpers ---------------------------------------------------------------------------------

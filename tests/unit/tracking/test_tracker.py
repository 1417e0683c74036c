"""MLflow study/technique runs, queried back from a real SQLite store."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sqlite3
from pathlib import Path

import pytest
import torch
import yaml
from helpers.tracking import broken_sqlite_uris, runs_of
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from smallvision.entrypoints import bound_mlflow_requests
from smallvision.errors import DataError
from smallvision.tracking import (
    COMPARISON_FILE,
    STUDY_KEY_TAG,
    StudyTracker,
    flatten,
    lightning_logger,
    publish_folder,
    resolve_tracking_uri,
)

TRACKING_LOGGER = "smallvision.tracking.tracker"


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One migrated SQLite store for the module (MLflow's migrations take seconds); tests use their own experiments."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow').as_posix()}/mlflow.db"
    MlflowClient(uri).search_experiments()
    return uri


@pytest.fixture
def experiment(request: pytest.FixtureRequest) -> str:
    return f"exp-{request.node.name}"


def make_tracker(uri: str, experiment: str, key: str = "study/synthetic/abc123", **kwargs) -> StudyTracker:
    return StudyTracker(uri, experiment, study_key=key, study_name="chollet", tags={"dataset": "synthetic"}, **kwargs)


def tracking_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == TRACKING_LOGGER and r.levelno == logging.WARNING]


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


def test_publishing_a_folder_logs_its_history_per_epoch_and_a_bad_file_makes_no_run(
    store_uri: str, experiment: str, tiny_study: Path, tmp_path: Path
) -> None:
    from helpers.study import config

    folder = tmp_path / "models" / "augment"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(
        json.dumps({"technique": "augment", "test_accuracy": 0.8, "test_loss": 0.4, "test_images": 10})
    )
    (folder / "history.csv").write_text(
        "epoch,train_loss,train_acc,val_loss,val_acc\n1,0.7,0.5,0.69,0.55\n2,0.6,0.6,0.65,0.6\n"
    )
    (folder / "confusion.json").write_text("[[4, 1], [1, 4]]")
    cfg = config("technique=augment", "logger.log_models=false")
    prepared = tiny_study / "data" / "prepared"
    tracker = make_tracker(store_uri, experiment)
    rows = [publish_folder(tracker, cfg, folder, prepared, "abc123abc123", {})]
    tracker.log_comparison(rows)

    client = MlflowClient(store_uri)
    (child,) = [r for r in runs_of(store_uri, experiment) if MLFLOW_PARENT_RUN_ID in r.data.tags]
    assert child.info.run_name == "augment" and child.data.tags["backbone"] == "small_convnet"
    assert child.data.metrics["test_accuracy"] == 0.8 and child.data.metrics["test_images"] == 10
    assert [(m.step, m.value) for m in client.get_metric_history(child.info.run_id, "val_acc")] == [(1, 0.55), (2, 0.6)]
    assert client.get_run(tracker.parent_run_id).data.metrics["augment.test_accuracy"] == 0.8

    with pytest.raises(DataError, match="metrics.json not found"):
        publish_folder(tracker, cfg, tmp_path / "models" / "baseline", prepared, "abc123abc123", {})
    (folder / "history.csv").write_text("epoch,train_loss\nlast,0.5\n")
    with pytest.raises(DataError, match="history.csv line 2 is not a history row"):
        publish_folder(tracker, cfg, folder, prepared, "abc123abc123", {})
    assert len(runs_of(store_uri, experiment)) == 2  # a bad file made no run


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_the_live_job_and_the_log_later_path_make_the_same_run(tiny_study: Path, tmp_path: Path) -> None:
    """A training job's run, and the run `pipelines/log_metrics.py` makes from the folder it wrote: the same
    params, tags, metrics (one step per epoch), artifacts, config/train.yaml and network."""
    from helpers.study import config

    from smallvision import stages, tracking
    from smallvision.data.manifest import MANIFEST, manifest_digest
    from smallvision.entrypoints import show_config
    from smallvision.job import run_training

    uri = f"sqlite:///{tmp_path.as_posix()}/mlflow.db"
    models = tmp_path / "models"
    cfg = config(
        "technique=baseline",
        "techniques.baseline.epochs=2",
        "logger.enabled=true",
        "logger.log_models=true",
        f"logger.tracking_uri={uri}",
        f"paths.models={models}",
    )
    plain = cfg.model_dump()  # as pipelines/train.py prints and logs it
    shown = show_config("train baseline", plain, stages.training_reads(plain), echo=False)
    run_training(cfg, tiny_study, config_read=shown)
    prepared = tiny_study / "data" / "prepared"
    digest = manifest_digest(prepared / MANIFEST)
    tracker = tracking.study_tracker(cfg, tiny_study, digest)  # the same study run: both runs are its children
    tracking.publish_folder(tracker, cfg, models / "baseline", prepared, digest, shown)

    client = MlflowClient(uri)
    live, later = sorted(
        (r for r in runs_of(uri, "smallvision") if MLFLOW_PARENT_RUN_ID in r.data.tags), key=lambda r: r.info.start_time
    )
    assert live.data.params == later.data.params and live.data.params["techniques.baseline.epochs"] == "2"
    assert live.data.tags == later.data.tags
    assert {"seed", "manifest", "backbone", "dataset", tracking.OUTPUT_TAG} <= set(live.data.tags)
    assert set(live.data.metrics) == set(later.data.metrics)
    for key, value in live.data.metrics.items():  # history.csv keeps 6 decimals
        assert later.data.metrics[key] == pytest.approx(value, abs=1e-6), key
        live_steps = [(m.step, m.value) for m in client.get_metric_history(live.info.run_id, key)]
        later_steps = [(m.step, m.value) for m in client.get_metric_history(later.info.run_id, key)]
        assert [s for s, _ in live_steps] == [s for s, _ in later_steps], key
        assert [v for _, v in later_steps] == pytest.approx([v for _, v in live_steps], abs=1e-6), key
    assert [m.step for m in client.get_metric_history(live.info.run_id, "val_acc")] == [1, 2]  # the epochs
    files = _artifacts(client, live.info.run_id)
    assert files == _artifacts(client, later.info.run_id)
    assert {"metrics.json", "history.csv", "confusion.json", "test_predictions.csv", "config/train.yaml"} <= files
    configs = [
        yaml.safe_load(Path(client.download_artifacts(run.info.run_id, "config/train.yaml", str(tmp_path))).read_text())
        for run in (live, later)
    ]
    assert configs == [shown, shown]
    assert len(live.inputs.dataset_inputs) == len(later.inputs.dataset_inputs) == 1
    assert len(live.outputs.model_outputs) == len(later.outputs.model_outputs) == 1  # the network


# -- failures: training goes on ------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers.study import make_dataset

    return make_dataset(tmp_path_factory.mktemp("tracked"), per_class=8)


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


class TinyModule:
    """Built lazily so importing this test file does not import lightning."""

    @staticmethod
    def make(stop_after_epoch: int | None = None):
        import lightning.pytorch as pl

        class Tiny(pl.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.layer = torch.nn.Linear(2, 1)

            def training_step(self, batch, batch_idx):
                x, y = batch
                loss = torch.nn.functional.mse_loss(self.layer(x), y)
                self.log("train_loss", loss, on_step=False, on_epoch=True)
                return loss

            def on_train_epoch_end(self) -> None:
                if stop_after_epoch is not None and self.current_epoch == stop_after_epoch:
                    raise KeyboardInterrupt  # Ctrl-C

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        return Tiny()


def fit(module, logger, root: Path) -> None:
    import lightning.pytorch as pl

    data = torch.utils.data.TensorDataset(torch.randn(8, 2), torch.randn(8, 1))
    trainer = pl.Trainer(
        max_epochs=2,
        logger=logger,
        accelerator="cpu",
        default_root_dir=root,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=4))


def test_plain_lightning_logger_logs_into_child_and_our_status_wins(
    store_uri: str, experiment: str, tmp_path: Path
) -> None:
    from lightning.pytorch.loggers import MLFlowLogger

    tracker = make_tracker(store_uri, experiment)
    client = MlflowClient(store_uri)
    with tracker.technique_run("baseline", {}, {}) as run_id:
        fit(TinyModule.make(), MLFlowLogger(tracking_uri=store_uri, run_id=run_id), tmp_path)
        # the plain logger's finalize() ends the run after fit; technique_run sets it again on exit
        assert client.get_run(run_id).info.status == "FINISHED"
    assert len(client.get_metric_history(run_id, "train_loss")) == 2
    assert len(runs_of(store_uri, experiment)) == 2  # the parent and this child: the logger made no run of its own

    previous = signal.getsignal(signal.SIGINT)  # Lightning ignores SIGINT after a Ctrl-C; give it back to pytest
    try:
        # Lightning turns KeyboardInterrupt into sys.exit(1)
        with pytest.raises(SystemExit), tracker.technique_run("augment", {}, {}) as killed_id:
            fit(TinyModule.make(stop_after_epoch=0), MLFlowLogger(tracking_uri=store_uri, run_id=killed_id), tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert client.get_run(killed_id).info.status == "KILLED"  # not the logger's FAILED


def test_child_run_logger_leaves_status_and_survives_store_errors(
    store_uri: str, experiment: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = make_tracker(store_uri, experiment)
    client = MlflowClient(store_uri)
    with tracker.technique_run("baseline", {}, {}) as run_id:
        logger = lightning_logger(tracker, run_id)
        fit(TinyModule.make(), logger, tmp_path)
        assert client.get_run(run_id).info.status == "RUNNING"  # test() may still follow
        assert len(client.get_metric_history(run_id, "train_loss")) == 2
        logger.log_hyperparams({"lr": 0.1})  # the config is the run's params; module hparams are not logged again
        assert "lr" not in client.get_run(run_id).data.params
        assert len(runs_of(store_uri, experiment)) == 2

        def unreachable(*args, **kwargs):
            raise ConnectionError("server went away")

        monkeypatch.setattr(logger.experiment, "log_batch", unreachable)
        with caplog.at_level(logging.WARNING):
            fit(TinyModule.make(), logger, tmp_path)  # still trains to the end
    (warning,) = tracking_warnings(caplog)
    assert "ConnectionError: server went away" in warning.getMessage()


# -- helpers ---------------------------------------------------------------------------------


def test_resolve_tracking_uri_precedence(tmp_path: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": "http://tracking.example:5000"}
    assert resolve_tracking_uri("sqlite:////abs/x.db", tmp_path, env) == "sqlite:////abs/x.db"
    assert resolve_tracking_uri(None, tmp_path, env) == "http://tracking.example:5000"
    assert resolve_tracking_uri(None, tmp_path, {}) == f"sqlite:///{tmp_path.resolve().as_posix()}/mlflow.db"
    assert resolve_tracking_uri("", tmp_path, {"MLFLOW_TRACKING_URI": ""}).endswith("/mlflow.db")
    # a relative SQLite path means the project, not the working directory
    assert (
        resolve_tracking_uri("sqlite:///runs/t.db", tmp_path, {})
        == f"sqlite:///{tmp_path.resolve().as_posix()}/runs/t.db"
    )


def test_a_dvc_experiment_in_a_temporary_copy_logs_to_the_main_projects_store(tmp_path: Path) -> None:
    """A queued or --temp `dvc exp run` runs in .dvc/tmp/exps/..., which DVC deletes: DVC_ROOT names the main
    repository, whose store the runs go to; DVC_EXP_NAME names the experiment."""
    from smallvision.tracking.store import dvc_experiment

    copy = tmp_path / ".dvc" / "tmp" / "exps" / "run" / "abc"
    dvc = {"DVC_ROOT": str(tmp_path), "DVC_EXP_NAME": "lucid-moth"}
    assert resolve_tracking_uri(None, copy, dvc) == f"sqlite:///{tmp_path.resolve().as_posix()}/mlflow.db"
    assert resolve_tracking_uri("sqlite:///runs/t.db", copy, dvc).endswith(f"{tmp_path.name}/runs/t.db")
    assert resolve_tracking_uri(None, copy, {}) == f"sqlite:///{copy.resolve().as_posix()}/mlflow.db"
    assert dvc_experiment(dvc) == "lucid-moth" and dvc_experiment({}) is None


def test_flatten_nested_config() -> None:
    flat = flatten(
        {
            "techniques": {"baseline": {"optimizer": {"lr": 0.0001, "name": "rmsprop"}, "filters": [32, 64]}},
            "seed": 42,
            "predict": {"input": None},
            "long": "x" * 10_000,
        }
    )
    assert flat["techniques.baseline.optimizer.lr"] == "0.0001"
    assert flat["techniques.baseline.optimizer.name"] == "rmsprop"
    assert flat["techniques.baseline.filters"] == "[32, 64]"
    assert flat["seed"] == "42" and flat["predict.input"] == "None"
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    assert len(flat["long"]) == MAX_PARAM_VAL_LENGTH
    assert len(flat) == 6

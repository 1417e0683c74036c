"""Each network as a logged MLflow model, queried back through MlflowClient from a real SQLite store, and the
registry's `champion` alias on the validation-best run (the experiment's kind tag: test_study_runs.py; the
manifest as each run's dataset input: test_inputs.py; a logged model predicting like its checkpoint:
tests/unit/test_predict.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from helpers.study import LIMITS
from helpers.tracking import make_tracker
from mlflow import MlflowClient

from smallvision.tracking import CHAMPION, OUTPUT_TAG, StudyTracker, load_classifier, log_network, update_champion

REGISTERED = "test-classifier"


def train_run(
    tracker: StudyTracker,
    checkpoints: Path,
    technique: str,
    checkpoint: str,
    val: float,
    test: float,
    val_loss: float = 0.5,
) -> str:
    """A finished technique run as a training job leaves it: metrics, output folder, logged network."""
    with tracker.technique_run(technique, {}, {OUTPUT_TAG: str(checkpoints / "models" / technique)}) as run_id:
        tracker.log_metrics(run_id, {"best_val_accuracy": val, "best_val_loss": val_loss, "test_accuracy": test})
        assert log_network(tracker, run_id, checkpoints / checkpoint, technique, checkpoints / "data/prepared", LIMITS)
    return run_id


def test_champion_is_the_validation_best_run_never_the_test_best(store_uri: str, checkpoints: Path) -> None:
    tracker = make_tracker(store_uri, "champion")
    best_val = train_run(tracker, checkpoints, "feature_extract", "net0.ckpt", val=0.9, test=0.80)
    best_test = train_run(tracker, checkpoints, "fine_tune", "net1.ckpt", val=0.8, test=0.99)
    line = update_champion(tracker, REGISTERED)
    client = MlflowClient(store_uri)
    champion = client.get_model_version_by_alias(REGISTERED, CHAMPION)
    assert champion.run_id == best_val and champion.tags["technique"] == "feature_extract"
    assert line == f"MLflow: {REGISTERED}@champion is version {champion.version}, feature_extract " + (
        f"(validation accuracy 0.9000, run {best_val})"
    )
    assert champion.tags["best_val_accuracy"] == "0.9"
    assert update_champion(tracker, REGISTERED) == line  # nothing changed: no new version
    assert len(client.search_model_versions(f"name = '{REGISTERED}'")) == 1

    # feature_extract retrained into the same folder, worse: its older run no longer counts
    train_run(tracker, checkpoints, "feature_extract", "net2.ckpt", val=0.7, test=0.95)
    update_champion(tracker, REGISTERED)
    assert client.get_model_version_by_alias(REGISTERED, CHAMPION).run_id == best_test
    _, meta = load_classifier(f"models:/{REGISTERED}@{CHAMPION}", store_uri)
    assert meta["technique"] == "fine_tune"

    # fine_tune retrained and killed half-way: its folder holds no finished run, so no champion comes from it
    with (
        pytest.raises(KeyboardInterrupt),
        tracker.technique_run("fine_tune", {}, {OUTPUT_TAG: str(checkpoints / "models/fine_tune")}),
    ):
        raise KeyboardInterrupt
    assert "feature_extract" in update_champion(tracker, REGISTERED)


def test_a_tie_in_validation_accuracy_goes_to_the_lower_validation_loss_then_the_later_technique(
    store_uri: str, checkpoints: Path
) -> None:
    """The champion's rule (tracking.models.champion_run): the highest validation accuracy; of equal ones the lower
    validation loss, then the later technique in the study's order. Its registered version is linked to the
    logged model (mlflow.register_model), so the model's page names the version."""
    client = MlflowClient(store_uri)
    tracker = make_tracker(store_uri, "champion-tie", key="study/tie")
    train_run(tracker, checkpoints, "baseline", "net0.ckpt", val=0.9, test=0.9, val_loss=0.30)
    lower_loss = train_run(tracker, checkpoints, "augment", "net1.ckpt", val=0.9, test=0.8, val_loss=0.20)
    train_run(tracker, checkpoints, "feature_extract", "net2.ckpt", val=0.9, test=0.7, val_loss=0.25)
    assert "augment" in update_champion(tracker, REGISTERED)
    champion = client.get_model_version_by_alias(REGISTERED, CHAMPION)
    assert champion.run_id == lower_loss
    model_id = champion.source.removeprefix("models:/")
    assert json.loads(client.get_logged_model(model_id).tags["mlflow.modelVersions"]) == [
        {"name": REGISTERED, "version": int(champion.version)}
    ]

    # the same accuracy and loss: the later technique (fine_tune after feature_extract), whatever ran first
    tracker = make_tracker(store_uri, "champion-tie-order", key="study/tie-order")
    later = train_run(tracker, checkpoints, "fine_tune", "net1.ckpt", val=0.9, test=0.6, val_loss=0.2)
    train_run(tracker, checkpoints, "feature_extract", "net0.ckpt", val=0.9, test=0.9, val_loss=0.2)
    assert "fine_tune" in update_champion(tracker, REGISTERED)
    assert client.get_model_version_by_alias(REGISTERED, CHAMPION).run_id == later


def test_model_logging_failure_warns_once_and_the_run_still_finishes(
    store_uri: str, checkpoints: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.pytorch

    def export_fails(*args, **kwargs):
        raise RuntimeError("torch.export could not trace the network")

    monkeypatch.setattr(mlflow.pytorch, "log_model", export_fails)
    tracker = make_tracker(store_uri, "failing")
    with caplog.at_level(logging.WARNING), tracker.technique_run("baseline", {}, {}) as run_id:
        assert (
            log_network(tracker, run_id, checkpoints / "net0.ckpt", "baseline", checkpoints / "data/prepared", LIMITS)
            is None
        )
        tracker.log_metrics(run_id, {"test_accuracy": 0.5})
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "the baseline network was not logged as a model (RuntimeError: torch.export could not" in warning.message
    run = MlflowClient(store_uri).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["test_accuracy"] == 0.5 and tracker.enabled


def test_dashboard_link_opens_the_runs_table(store_uri: str) -> None:
    tracker = make_tracker(store_uri, "link")
    assert tracker.dashboard_hint("http://127.0.0.1:5000") is None  # nothing logged yet
    with tracker.technique_run("baseline", {}, {}):
        pass
    experiment = MlflowClient(store_uri).get_experiment_by_name("link").experiment_id
    assert tracker.dashboard_hint("http://127.0.0.1:5001") == (
        f"MLflow: http://127.0.0.1:5001/#/experiments/{experiment}?workflowType=machine_learning"
        f"  (serve it first: mlflow ui --backend-store-uri {store_uri} --host 127.0.0.1 --port 5001)"
    )
    server = StudyTracker("https://user:secret@mlflow.example:8443/", "e", "k", "s")
    server.runs._experiment_id = "7"  # as if the study's runs were found there
    assert server.dashboard_hint("http://127.0.0.1:5000") == (
        "MLflow: https://mlflow.example:8443/#/experiments/7?workflowType=machine_learning"
    )

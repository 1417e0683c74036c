"""MLflow as a training study's home, queried back through MlflowClient from a real SQLite store: the experiment's
kind tag, the manifest as each run's dataset input, each network as a logged model that predicts like its
checkpoint, and the registry's `champion` alias on the validation-best run."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.study import LIMITS, config, make_dataset, technique
from mlflow import MlflowClient
from mlflow.tracking._tracking_service.utils import _use_tracking_uri

from smallvision.data.manifest import MANIFEST, manifest_digest
from smallvision.errors import ConfigError
from smallvision.networks import ImageClassifier, build_net, load_checkpoint, make_spec
from smallvision.predict import predict, predict_images
from smallvision.tracking import (
    CHAMPION,
    OUTPUT_TAG,
    StudyTracker,
    load_classifier,
    log_dataset,
    log_network,
    update_champion,
)
from smallvision.tracking.study_runs import EXPERIMENT_KIND_TAG, MODEL_TRAINING

SIZE = 48  # the small convnet's smallest input is 46 px
REGISTERED = "test-classifier"


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow').as_posix()}/mlflow.db"
    MlflowClient(uri).search_experiments()  # migrate once (seconds)
    return uri


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared dataset (4 images per class) and three small-convnet checkpoints with different weights."""
    root = make_dataset(tmp_path_factory.mktemp("study"), per_class=4)
    spec = make_spec(technique(image_size=SIZE, dropout=0.0), config().backbone, ["circle", "square"])
    for seed in range(3):
        torch.manual_seed(seed)
        net = build_net(spec)
        state = {f"net.{key}": value for key, value in net.state_dict().items()}
        torch.save({"hyper_parameters": {"spec": spec}, "state_dict": state}, root / f"net{seed}.ckpt")
    return root


def make_tracker(uri: str, experiment: str, key: str = "study/synthetic/abc") -> StudyTracker:
    return StudyTracker(uri, experiment, study_key=key, study_name="study", tags={"dataset": "synthetic"})


def train_run(
    tracker: StudyTracker,
    study: Path,
    technique: str,
    checkpoint: str,
    val: float,
    test: float,
    val_loss: float = 0.5,
) -> str:
    """A finished technique run as a training job leaves it: metrics, output folder, logged network."""
    with tracker.technique_run(technique, {}, {OUTPUT_TAG: str(study / "models" / technique)}) as run_id:
        tracker.log_metrics(run_id, {"best_val_accuracy": val, "best_val_loss": val_loss, "test_accuracy": test})
        assert log_network(tracker, run_id, study / checkpoint, technique, study / "data/prepared", LIMITS)
    return run_id


def test_experiment_is_created_or_tagged_as_model_training(store_uri: str) -> None:
    client = MlflowClient(store_uri)
    fresh = make_tracker(store_uri, "kind-new")
    with fresh.technique_run("baseline", {}, {}):
        pass
    assert client.get_experiment_by_name("kind-new").tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING

    client.create_experiment("kind-old", tags={EXPERIMENT_KIND_TAG: "genai_development"})  # as MLflow's demo does
    with make_tracker(store_uri, "kind-old").technique_run("baseline", {}, {}):
        pass
    assert client.get_experiment_by_name("kind-old").tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING


def test_manifest_is_the_runs_dataset_input(store_uri: str, study: Path) -> None:
    manifest = study / "data/prepared" / MANIFEST
    digest = manifest_digest(manifest)
    tracker = make_tracker(store_uri, "dataset")
    for _ in range(2):  # a second job of the same study
        with tracker.technique_run("baseline", {}, {}) as run_id:
            log_dataset(tracker, (run_id, tracker.parent_run_id), manifest, "synthetic", digest)
    client = MlflowClient(store_uri)
    (on_study,) = client.get_run(tracker.parent_run_id).inputs.dataset_inputs  # logged once
    (given,) = client.get_run(run_id).inputs.dataset_inputs
    assert on_study.dataset == given.dataset
    assert (given.dataset.name, given.dataset.digest, given.dataset.source_type) == ("synthetic", digest[:12], "local")
    assert json.loads(given.dataset.profile) == {"num_rows": 8, "train": 4, "val": 2, "test": 2}
    assert json.loads(given.dataset.source) == {"uri": manifest.resolve().as_uri()}
    assert {t.key: t.value for t in given.tags} == {"mlflow.data.context": "training"}
    experiment = client.get_experiment_by_name("dataset").experiment_id
    found = client.search_runs([experiment], filter_string=f"dataset.digest = '{digest[:12]}'")
    assert run_id in [r.info.run_id for r in found] and len(found) == 3


def test_logged_network_predicts_like_its_checkpoint(store_uri: str, study: Path) -> None:
    import mlflow.pytorch

    tracker = make_tracker(store_uri, "model")
    with tracker.technique_run("baseline", {}, {}) as run_id:
        started = time.perf_counter()
        model_id = log_network(tracker, run_id, study / "net0.ckpt", "baseline", study / "data/prepared", LIMITS)
        seconds = time.perf_counter() - started
    assert model_id is not None
    print(f"log_network: {seconds:.2f} s")  # the small convnet: ~0.5-2.5 s on a 2-core CPU
    client = MlflowClient(store_uri)
    logged = client.get_logged_model(model_id)
    assert logged.source_run_id == run_id and logged.status == "READY" and logged.name == "baseline"
    assert logged.experiment_id == client.get_experiment_by_name("model").experiment_id
    assert [o.model_id for o in client.get_run(run_id).outputs.model_outputs] == [model_id]

    net, spec = load_checkpoint(study / "net0.ckpt")
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8))
    with torch.no_grad(), _use_tracking_uri(store_uri):  # MLflow loads through the global tracking URI
        loaded = mlflow.pytorch.load_model(f"models:/{model_id}")
        assert torch.equal(loaded(images), ImageClassifier(net, spec["mean"], spec["std"]).eval()(images))
    classifier, meta = load_classifier(f"models:/{model_id}", store_uri)
    assert meta["classes"] == ["circle", "square"] and meta["image_size"] == SIZE and meta["technique"] == "baseline"
    images_dir = study / "data/raw"
    assert predict_images(classifier, meta["classes"], SIZE, images_dir, 32, False, LIMITS) == predict(
        study / "net0.ckpt", images_dir, 32, False, LIMITS
    )


def test_champion_is_the_validation_best_run_never_the_test_best(store_uri: str, study: Path) -> None:
    tracker = make_tracker(store_uri, "champion")
    best_val = train_run(tracker, study, "feature_extract", "net0.ckpt", val=0.9, test=0.80)
    best_test = train_run(tracker, study, "fine_tune", "net1.ckpt", val=0.8, test=0.99)
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
    train_run(tracker, study, "feature_extract", "net2.ckpt", val=0.7, test=0.95)
    update_champion(tracker, REGISTERED)
    assert client.get_model_version_by_alias(REGISTERED, CHAMPION).run_id == best_test
    _, meta = load_classifier(f"models:/{REGISTERED}@{CHAMPION}", store_uri)
    assert meta["technique"] == "fine_tune"

    # fine_tune retrained and killed half-way: its folder holds no finished run, so no champion comes from it
    with (
        pytest.raises(KeyboardInterrupt),
        tracker.technique_run("fine_tune", {}, {OUTPUT_TAG: str(study / "models/fine_tune")}),
    ):
        raise KeyboardInterrupt
    assert "feature_extract" in update_champion(tracker, REGISTERED)


def test_a_tie_in_validation_accuracy_goes_to_the_lower_validation_loss_then_the_later_technique(
    store_uri: str, study: Path
) -> None:
    """The champion's rule (tracking.models.champion_run): the highest validation accuracy; of equal ones the lower
    validation loss, then the later technique in the study's order. Its registered version is linked to the
    logged model (mlflow.register_model), so the model's page names the version."""
    client = MlflowClient(store_uri)
    tracker = make_tracker(store_uri, "champion-tie", key="study/tie")
    train_run(tracker, study, "baseline", "net0.ckpt", val=0.9, test=0.9, val_loss=0.30)
    lower_loss = train_run(tracker, study, "augment", "net1.ckpt", val=0.9, test=0.8, val_loss=0.20)
    train_run(tracker, study, "feature_extract", "net2.ckpt", val=0.9, test=0.7, val_loss=0.25)
    assert "augment" in update_champion(tracker, REGISTERED)
    champion = client.get_model_version_by_alias(REGISTERED, CHAMPION)
    assert champion.run_id == lower_loss
    model_id = champion.source.removeprefix("models:/")
    assert json.loads(client.get_logged_model(model_id).tags["mlflow.modelVersions"]) == [
        {"name": REGISTERED, "version": int(champion.version)}
    ]

    # the same accuracy and loss: the later technique (fine_tune after feature_extract), whatever ran first
    tracker = make_tracker(store_uri, "champion-tie-order", key="study/tie-order")
    later = train_run(tracker, study, "fine_tune", "net1.ckpt", val=0.9, test=0.6, val_loss=0.2)
    train_run(tracker, study, "feature_extract", "net0.ckpt", val=0.9, test=0.9, val_loss=0.2)
    assert "fine_tune" in update_champion(tracker, REGISTERED)
    assert client.get_model_version_by_alias(REGISTERED, CHAMPION).run_id == later


def test_model_logging_failure_warns_once_and_the_run_still_finishes(
    store_uri: str, study: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.pytorch

    def export_fails(*args, **kwargs):
        raise RuntimeError("torch.export could not trace the network")

    monkeypatch.setattr(mlflow.pytorch, "log_model", export_fails)
    tracker = make_tracker(store_uri, "failing")
    with caplog.at_level(logging.WARNING), tracker.technique_run("baseline", {}, {}) as run_id:
        assert log_network(tracker, run_id, study / "net0.ckpt", "baseline", study / "data/prepared", LIMITS) is None
        tracker.log_metrics(run_id, {"test_accuracy": 0.5})
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "the baseline network was not logged as a model (RuntimeError: torch.export could not" in warning.message
    run = MlflowClient(store_uri).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["test_accuracy"] == 0.5 and tracker.enabled


def test_unknown_model_is_one_clear_error(store_uri: str) -> None:
    with pytest.raises(ConfigError, match=r"predict.model='models:/no-such-model@champion' cannot be loaded"):
        load_classifier("models:/no-such-model@champion", store_uri)


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

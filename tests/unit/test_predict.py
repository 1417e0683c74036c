"""Predictions of a logged network or a checkpoint."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.study import LIMITS
from helpers.tracking import SIZE, make_tracker
from mlflow import MlflowClient
from mlflow.tracking._tracking_service.utils import _use_tracking_uri

from smallvision.errors import ConfigError
from smallvision.networks import ImageClassifier, load_checkpoint
from smallvision.predict import predict, predict_images
from smallvision.tracking import load_classifier, log_network


def test_logged_network_predicts_like_its_checkpoint(store_uri: str, checkpoints: Path) -> None:
    import mlflow.pytorch

    tracker = make_tracker(store_uri, "model")
    with tracker.technique_run("baseline", {}, {}) as run_id:
        started = time.perf_counter()
        model_id = log_network(
            tracker, run_id, checkpoints / "net0.ckpt", "baseline", checkpoints / "data/prepared", LIMITS
        )
        seconds = time.perf_counter() - started
    assert model_id is not None
    print(f"log_network: {seconds:.2f} s")  # the small convnet: ~0.5-2.5 s on a 2-core CPU
    client = MlflowClient(store_uri)
    logged = client.get_logged_model(model_id)
    assert logged.source_run_id == run_id and logged.status == "READY" and logged.name == "baseline"
    assert logged.experiment_id == client.get_experiment_by_name("model").experiment_id
    assert [o.model_id for o in client.get_run(run_id).outputs.model_outputs] == [model_id]

    net, spec = load_checkpoint(checkpoints / "net0.ckpt")
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8))
    with torch.no_grad(), _use_tracking_uri(store_uri):  # MLflow loads through the global tracking URI
        loaded = mlflow.pytorch.load_model(f"models:/{model_id}")
        assert torch.equal(loaded(images), ImageClassifier(net, spec["mean"], spec["std"]).eval()(images))
    classifier, meta = load_classifier(f"models:/{model_id}", store_uri)
    assert meta["classes"] == ["circle", "square"] and meta["image_size"] == SIZE and meta["technique"] == "baseline"
    images_dir = checkpoints / "data/raw"
    assert predict_images(classifier, meta["classes"], SIZE, images_dir, 32, False, LIMITS) == predict(
        checkpoints / "net0.ckpt", images_dir, 32, False, LIMITS
    )


def test_unknown_model_is_one_clear_error(store_uri: str) -> None:
    with pytest.raises(ConfigError, match=r"predict.model='models:/no-such-model@champion' cannot be loaded"):
        load_classifier("models:/no-such-model@champion", store_uri)

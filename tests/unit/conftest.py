"""Fixtures of the unit tests, one per test module: a prepared synthetic study to train on, and for MLflow-logged
networks (tracking, predict) one SQLite store and three small-convnet checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.study import config, make_dataset, technique
from helpers.tracking import SIZE
from mlflow import MlflowClient

from smallvision.networks import build_net, make_spec


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow').as_posix()}/mlflow.db"
    MlflowClient(uri).search_experiments()  # migrate once (seconds)
    return uri


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared dataset (4 images per class) and three small-convnet checkpoints with different weights."""
    root = make_dataset(tmp_path_factory.mktemp("study"), per_class=4)
    spec = make_spec(technique(image_size=SIZE, dropout=0.0), config().backbone, ["circle", "square"])
    for seed in range(3):
        torch.manual_seed(seed)
        net = build_net(spec)
        state = {f"net.{key}": value for key, value in net.state_dict().items()}
        torch.save({"hyper_parameters": {"spec": spec}, "state_dict": state}, root / f"net{seed}.ckpt")
    return root


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared synthetic dataset (a test module that needs another size defines its own)."""
    return make_dataset(tmp_path_factory.mktemp("study"))

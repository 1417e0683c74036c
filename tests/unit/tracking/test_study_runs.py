"""The study's experiment and runs in MLflow: the experiment's kind tag."""

from __future__ import annotations

from helpers.tracking import make_tracker
from mlflow import MlflowClient

from smallvision.tracking.study_runs import EXPERIMENT_KIND_TAG, MODEL_TRAINING


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

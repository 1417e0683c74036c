"""The study's experiment and runs in MLflow: the experiment's kind tag, the runs' source."""

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


def test_the_runs_name_their_source(store_uri: str) -> None:
    """MLflow's Source column: the study run names the pipeline, a technique run the command that trains it."""
    client = MlflowClient(store_uri)
    tracker = make_tracker(store_uri, "source")
    with tracker.technique_run("modern", {}, {}):
        pass
    (child,) = client.search_runs([client.get_experiment_by_name("source").experiment_id], "tags.technique = 'modern'")
    parent = client.get_run(child.data.tags["mlflow.parentRunId"])
    assert child.data.tags["mlflow.source.name"] == "pipelines/train.py technique=modern"
    assert parent.data.tags["mlflow.source.name"] == "dvc.yaml"
    assert child.data.tags["mlflow.source.type"] == parent.data.tags["mlflow.source.type"] == "LOCAL"

"""Publishing a technique's finished folder as its MLflow run: the live job and the log-later command make the same
run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers.tracking import make_tracker, runs_of
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from smallvision.errors import DataError
from smallvision.tracking import (
    publish_folder,
)


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

"""One training job (smallvision.job.run_training): where it writes and what it records of the code that ran."""

from __future__ import annotations

import json

from helpers.study import config, make_dataset
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT

from smallvision import provenance
from smallvision.job import run_training
from smallvision.tracking import tracker


def test_the_git_commit_is_asked_once_and_is_the_same_in_the_metrics_and_on_the_runs(tmp_path, monkeypatch):
    root = make_dataset(tmp_path, per_class=8)
    asked = []

    def git_commit(where):
        asked.append(where)
        return "c0ffee" * 6 + "c0ff"

    monkeypatch.setattr(provenance, "git_commit", git_commit)
    monkeypatch.setattr(tracker, "git_commit", git_commit)  # the tracker's own import of it
    uri = f"sqlite:///{tmp_path.as_posix()}/mlflow.db"
    cfg = config(
        "technique=baseline", "techniques.baseline.epochs=1", "logger.enabled=true", f"logger.tracking_uri={uri}"
    )
    metrics = run_training(cfg, root)

    assert len(asked) == 1
    assert metrics["git_commit"] == json.loads((root / "models/baseline/metrics.json").read_text())["git_commit"]
    assert metrics["git_commit"] == "c0ffee" * 6 + "c0ff"
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(cfg.logger.experiment_name).experiment_id])
    assert runs and {r.data.tags[MLFLOW_GIT_COMMIT] for r in runs} == {metrics["git_commit"]}

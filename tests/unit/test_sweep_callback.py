"""The end of a sweep: its comparison drawn into its folder and logged on the sweep's MLflow run (the Hydra callback
ending a real multirun: tests/e2e/test_sweeps.py)."""

from __future__ import annotations

import pytest
from helpers.fake_runs import backbone_sweep
from helpers.study import config
from helpers.tracking import runs_of
from mlflow import MlflowClient

from smallvision.sweep_callback import publish_sweep
from smallvision.tracking import COMPARISON_FILE


def test_a_finished_sweep_gets_its_comparison_files_and_they_are_on_its_mlflow_run(tmp_path):
    sweep = backbone_sweep(tmp_path)
    uri = f"sqlite:///{tmp_path.as_posix()}/mlflow.db"
    settings = config("logger.enabled=true", f"logger.tracking_uri={uri}", "visualize.dpi=30")
    files = publish_sweep(settings, tmp_path, sweep)
    assert files and all(f.is_file() and f.parent == sweep for f in files)
    (run,) = runs_of(uri, settings.logger.experiment_name)
    logged = {a.path for a in MlflowClient(uri).list_artifacts(run.info.run_id)}
    assert {f.name for f in files} | {COMPARISON_FILE} <= logged, logged
    # the comparison's numbers, one per technique and backbone (as the sweep's comparison table)
    assert run.data.metrics["fine_tune/efficientnet_lite2.test_accuracy_mean"] == pytest.approx(0.9845)
    assert run.data.metrics["feature_extract/efficientnet_lite0.n_seeds"] == 2

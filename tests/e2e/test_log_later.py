"""The log-later command (pipelines/log_metrics.py) run as a user runs it: a finished technique logged on its study
run; a store that fails again, or a run of another study, is one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.tracking import broken_sqlite_uris, runs_of
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from smallvision.tracking import (
    STUDY_KEY_TAG,
)


@pytest.mark.slow  # ~20 s: the command in a new interpreter; tests/unit/tracking/test_publish.py holds its logic
def test_the_log_later_command_logs_a_finished_technique_on_its_study_run(tmp_path: Path) -> None:
    """The command the failure warning names: models/<technique>/ becomes a child of the study run that the
    training stages use; a store that fails again is one clear error, not a silent success."""
    from helpers import ROOT

    from smallvision.data.manifest import manifest_digest

    manifest = tmp_path / "data" / "prepared" / "manifest.csv"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("path,label,split,sha256\n")
    folder = tmp_path / "models" / "baseline"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"technique": "baseline", "test_accuracy": 0.7, "test_images": 10}))

    def log_later(uri: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                str(ROOT / "pipelines" / "log_metrics.py"),
                "technique=baseline",
                "preset=smoke",
                f"logger.tracking_uri={uri}",
                "hydra.run.dir=.",
                "hydra.output_subdir=null",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    uri = f"sqlite:///{tmp_path.as_posix()}/mlflow.db"
    result = log_later(uri)
    assert result.returncode == 0, result.stderr[-3000:]
    (child,) = [r for r in runs_of(uri, "smallvision") if MLFLOW_PARENT_RUN_ID in r.data.tags]
    assert child.info.run_name == "baseline" and child.data.metrics["test_accuracy"] == 0.7
    parent = MlflowClient(uri).get_run(child.data.tags[MLFLOW_PARENT_RUN_ID])
    assert parent.data.metrics["baseline.test_accuracy"] == 0.7
    # the key the training stages find their study run by: <study>/<dataset>/seed <seed>/<manifest, 12 hex digits>
    assert parent.data.tags[STUDY_KEY_TAG] == f"smoke/synthetic/seed 42/{manifest_digest(manifest)[:12]}"
    assert parent.info.run_name == "study smoke (synthetic, seed 42)"

    failed = log_later(broken_sqlite_uris(tmp_path)["not_a_database"])
    assert failed.returncode == 2 and "smallvision: error: MLflow tracking failed again" in failed.stderr

    # a run trained with another seed is not this study's: refused in one line, nothing logged
    (folder / "metrics.json").write_text(json.dumps({"technique": "baseline", "test_accuracy": 0.6, "seed": 7}))
    other = log_later(uri)
    assert other.returncode == 2, other.stderr[-3000:]
    assert "smallvision: error:" in other.stderr and "trained with seed 7, not this study's seed 42" in other.stderr
    assert len([r for r in runs_of(uri, "smallvision") if MLFLOW_PARENT_RUN_ID in r.data.tags]) == 1

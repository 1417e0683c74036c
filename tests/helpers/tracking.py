"""A tracker of a test study, an MLflow store's runs, and store addresses that cannot work (a file that is not a
database, ...)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mlflow import MlflowClient

from smallvision.tracking import StudyTracker

TRACKING_LOGGER = "smallvision.tracking.tracker"
SIZE = 48  # the test checkpoints' input size: the small convnet's smallest input is 46 px


def runs_of(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def broken_sqlite_uris(tmp_path: Path) -> dict[str, str]:
    not_a_db = tmp_path / "not_a_db.db"
    not_a_db.write_bytes(b"this is not an SQLite database, just text" * 10)
    a_file = tmp_path / "a_file"
    a_file.write_text("a file where a folder should be")
    return {
        "not_a_database": f"sqlite:///{not_a_db.as_posix()}",
        "folder_is_a_file": f"sqlite:///{a_file.as_posix()}/mlflow.db",
    }


def make_tracker(uri: str, experiment: str, key: str = "study/synthetic/abc123", **kwargs) -> StudyTracker:
    return StudyTracker(uri, experiment, study_key=key, study_name="chollet", tags={"dataset": "synthetic"}, **kwargs)


def tracking_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == TRACKING_LOGGER and r.levelno == logging.WARNING]

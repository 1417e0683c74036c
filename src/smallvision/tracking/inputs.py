"""What a run read: the manifest as its MLflow dataset input (the runs table's Dataset column), and the part of
the resolved configuration its stage reads, as a YAML artifact."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from smallvision.data.manifest import manifest_split_counts
from smallvision.tracking.tracker import StudyTracker

DATASET_CONTEXT = "training"
CONFIG_FOLDER = "config"  # the run's artifacts: config/<stage>.yaml


def manifest_dataset(manifest: Path, name: str, digest: str) -> Dataset:
    """The manifest as an MLflow dataset: `name` (the data source's), the first 12 hex digits of its content hash
    (as the runs' `manifest` tag) and its split sizes as the profile. MLflow keeps one dataset per name and digest
    in an experiment, so the digest must change whenever the profile does: the content hash does."""
    sizes = manifest_split_counts(manifest)
    return Dataset(
        name=name,
        digest=digest[:12],
        source_type="local",
        source=json.dumps({"uri": Path(manifest).resolve().as_uri()}),
        profile=json.dumps({"num_rows": sum(sizes.values()), **sizes}),
    )


def log_dataset(tracker: StudyTracker, run_ids: Sequence[str | None], manifest: Path, name: str, digest: str) -> None:
    """Log the manifest as the training dataset input of each run (a technique run and its study run: the study
    run's row, the one the runs table shows first, then names the data too)."""
    dataset = DatasetInput(
        manifest_dataset(manifest, name, digest), [InputTag(MLFLOW_DATASET_CONTEXT, DATASET_CONTEXT)]
    )
    for run_id in filter(None, run_ids):
        tracker.guarded(lambda run_id=run_id: tracker.client.log_inputs(run_id, datasets=[dataset]))


def log_config(tracker: StudyTracker, run_id: str | None, config: Mapping[str, Any], stage: str) -> None:
    """The configuration `stage` read (see `entrypoints.show_config`) as config/<stage>.yaml on the run."""
    if run_id is None:
        return
    tracker.guarded(lambda: tracker.client.log_dict(run_id, dict(config), f"{CONFIG_FOLDER}/{stage}.yaml"))

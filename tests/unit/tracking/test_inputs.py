"""What a run read: the manifest as its MLflow dataset input."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.tracking import make_tracker
from mlflow import MlflowClient

from smallvision.data.manifest import MANIFEST, manifest_digest
from smallvision.tracking import (
    log_dataset,
)


def test_manifest_is_the_runs_dataset_input(store_uri: str, checkpoints: Path) -> None:
    manifest = checkpoints / "data/prepared" / MANIFEST
    digest = manifest_digest(manifest)
    tracker = make_tracker(store_uri, "dataset")
    for _ in range(2):  # a second job of the same study
        with tracker.technique_run("baseline", {}, {}) as run_id:
            log_dataset(tracker, (run_id, tracker.parent_run_id), manifest, "synthetic", digest)
    client = MlflowClient(store_uri)
    (on_study,) = client.get_run(tracker.parent_run_id).inputs.dataset_inputs  # logged once
    (given,) = client.get_run(run_id).inputs.dataset_inputs
    assert on_study.dataset == given.dataset
    assert (given.dataset.name, given.dataset.digest, given.dataset.source_type) == ("synthetic", digest[:12], "local")
    assert json.loads(given.dataset.profile) == {"num_rows": 8, "train": 4, "val": 2, "test": 2}
    assert json.loads(given.dataset.source) == {"uri": manifest.resolve().as_uri()}
    assert {t.key: t.value for t in given.tags} == {"mlflow.data.context": "training"}
    experiment = client.get_experiment_by_name("dataset").experiment_id
    found = client.search_runs([experiment], filter_string=f"dataset.digest = '{digest[:12]}'")
    assert run_id in [r.info.run_id for r in found] and len(found) == 3

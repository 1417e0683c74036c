"""A training job's folder published as its MLflow run: the one path both the live job (`smallvision.job`) and the
"log later" command (`pipelines/log_metrics.py`, after tracking failed while training) take, so both make the same
run: the resolved config as params, the same tags, the config the stage read (config/train.yaml), the manifest as
its dataset, metrics.json's numbers, one step per epoch of history.csv, the result files and the network."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smallvision.data.manifest import MANIFEST
from smallvision.runs import CHECKPOINT, HISTORY, RESULT_FILES, numeric, read_history, read_metrics
from smallvision.tracking.inputs import log_config, log_dataset
from smallvision.tracking.models import OUTPUT_TAG, log_network
from smallvision.tracking.store import flatten
from smallvision.tracking.tracker import StudyTracker

if TYPE_CHECKING:
    from smallvision.schema import Settings

CONFIG_STAGE = "train"  # the run's config artifact: config/train.yaml


def run_tags(settings: Settings, folder: Path, manifest_digest: str) -> dict[str, str]:
    """The tags of the run of settings.technique's job writing into `folder` (the tracker adds the dataset and the
    commit to every run)."""
    from smallvision.networks import network_name  # here, not at module level: tracking does not import torch

    return {
        "technique": settings.technique,
        "dataset": settings.data.name,
        "seed": str(settings.seed),
        "backbone": network_name(settings.selected, settings.backbone),
        "manifest": manifest_digest[:12],
        OUTPUT_TAG: str(Path(folder).resolve()),
    }


@contextmanager
def technique_run(
    tracker: StudyTracker,
    settings: Settings,
    folder: Path,
    prepared: Path,
    manifest_digest: str,
    config_read: Mapping[str, Any],
) -> Iterator[str | None]:
    """The child run of settings.technique's job, opened with what is known before training: the resolved config as
    params, the tags, `config_read` (what the stage read, `entrypoints.show_config`) and the manifest as the
    dataset of the run and of the study run. Yields its id (None when tracking is off or failed)."""
    params, tags = flatten(settings.model_dump()), run_tags(settings, folder, manifest_digest)
    with tracker.technique_run(settings.technique, params, tags) as run_id:
        log_config(tracker, run_id, config_read, CONFIG_STAGE)
        log_dataset(tracker, (run_id, tracker.parent_run_id), prepared / MANIFEST, settings.data.name, manifest_digest)
        yield run_id


def log_results(tracker: StudyTracker, run_id: str | None, settings: Settings, folder: Path, prepared: Path) -> None:
    """What the finished job wrote into `folder`, on its run: metrics.json's numbers, the result files and, when
    `logger.log_models`, the network."""
    if run_id is None:
        return
    tracker.log_metrics(run_id, numeric(read_metrics(folder)))
    tracker.log_artifacts(run_id, [folder / name for name in RESULT_FILES])
    if settings.logger.log_models and (folder / CHECKPOINT).exists():
        log_network(tracker, run_id, folder / CHECKPOINT, settings.technique, prepared, settings.data.image_limits)


def log_history(tracker: StudyTracker, run_id: str | None, rows: list[dict[str, float]]) -> None:
    """history.csv's rows, one step per epoch (the steps the live job's Lightning logger gives them)."""
    for row in rows:
        values = {key: value for key, value in row.items() if key != "epoch" and not math.isnan(value)}
        tracker.log_metrics(run_id, values, step=int(row["epoch"]))


def publish_folder(
    tracker: StudyTracker,
    settings: Settings,
    folder: Path,
    prepared: Path,
    manifest_digest: str,
    config_read: Mapping[str, Any],
) -> dict[str, Any]:
    """A finished job's folder (models/<technique>/) as the run the live job would have made, under the study
    run; `settings` are those it was trained with. Returns metrics.json, ready for `tracker.log_comparison`.
    Its files are read first: a bad file makes no run."""
    folder = Path(folder)
    metrics = read_metrics(folder)
    history = read_history(folder / HISTORY, columns=("epoch",)) if (folder / HISTORY).is_file() else []
    with technique_run(tracker, settings, folder, prepared, manifest_digest, config_read) as run_id:
        log_history(tracker, run_id, history)
        log_results(tracker, run_id, settings, folder, prepared)
    return metrics

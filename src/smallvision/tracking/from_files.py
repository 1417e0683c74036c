"""The "log later" path: finished techniques logged to MLflow from their folders, after tracking failed while
they trained (`pipelines/log_metrics.py`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from smallvision.runs import CONFUSION, HISTORY, METRICS, numeric, read_history, read_metrics
from smallvision.tracking.models import OUTPUT_TAG
from smallvision.tracking.tracker import StudyTracker


def log_from_metrics_files(
    tracker: StudyTracker,
    technique_dirs: list[Path],
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    also: Callable[[str, Path], None] | None = None,
) -> list[dict[str, Any]]:
    """Log finished techniques from their files on disk.

    Each folder (models/<technique>/) holds metrics.json and, when present, history.csv (one metric
    step per epoch) and confusion.json; each becomes a child run of the study. `also(run_id, folder)` logs
    more on each run (its dataset, its network). Returns the metrics.json contents, one dict per folder, ready
    for `tracker.log_comparison`.
    """
    rows = []
    for folder in map(Path, technique_dirs):
        metrics = read_metrics(folder)
        technique = str(metrics.get("technique", folder.name))
        run_tags = {key: str(metrics[key]) for key in ("technique", "backbone") if key in metrics}
        run_tags.update(tags or {})
        run_tags[OUTPUT_TAG] = str(folder.resolve())
        history_path = folder / HISTORY
        # read first: a bad file makes no run
        history = read_history(history_path, columns=("epoch",)) if history_path.is_file() else []
        with tracker.technique_run(technique, params or {}, run_tags) as run_id:
            tracker.log_metrics(run_id, numeric(metrics))
            for row in history:
                values = {key: value for key, value in row.items() if key != "epoch" and not math.isnan(value)}
                tracker.log_metrics(run_id, values, step=int(row["epoch"]))
            tracker.log_artifacts(
                run_id, [path for path in (folder / METRICS, history_path, folder / CONFUSION) if path.exists()]
            )
            if also is not None and run_id is not None:
                also(run_id, folder)
        rows.append(metrics)
    return rows

"""A trained technique's output folder (models/<technique>/, or a sweep job's folder): the names of its files,
their one writer and their readers, and the comparison rows built from them (one per technique, or aggregated
over the seeds of a sweep). Training writes them; visualize, tracking, predict and the sweeps read them.

metrics.json is written last and atomically: a folder that holds one holds a finished run.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smallvision.errors import DataError
from smallvision.files import atomic_write, atomic_write_text
from smallvision.stats import confusion_matrix

CHECKPOINT = "best.ckpt"  # the best-validation weights, with the spec that rebuilds the network
METRICS = "metrics.json"  # test metrics and what produced them; present = finished
HISTORY = "history.csv"  # one row per epoch; epoch 0: the starting weights of a technique that starts trained
PREDICTIONS = "test_predictions.csv"  # one row per test image
CONFUSION = "confusion.json"  # the test confusion matrix
# {technique: test accuracy}, a DVC metrics file: `dvc exp show` names its column after the technique alone (the
# keys of metrics.json, the same in every technique's, get their file's path in front)
ACCURACY = "test_accuracy.json"
RESULT_FILES = (METRICS, HISTORY, CONFUSION, PREDICTIONS)  # what a run logs to MLflow besides its checkpoint

HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")
PREDICTION_COLUMNS = ("path", "actual", "predicted", "probability")

STUDY_ORDER = ("baseline", "augment", "modern", "feature_extract", "fine_tune")


def study_order(technique: str) -> tuple[int, str]:
    """Sort key: the study's techniques in the book's order, then any other by name."""
    return STUDY_ORDER.index(technique) if technique in STUDY_ORDER else len(STUDY_ORDER), technique


# ----------------------------------------------------------------------------------------------- writing


def _write_csv(path: Path, rows: Iterable[Sequence[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def _cell(value: float) -> str:
    """A history value; empty when there is none (NaN: epoch 0, validated before training, has no training loss)."""
    return "" if math.isnan(value) else f"{value:.6f}"


def write_outputs(out: Path, metrics: dict, history: list[dict], samples: dict, records, test_rows, classes) -> None:
    """history.csv, test_predictions.csv, confusion.json, test_accuracy.json, then metrics.json last: its presence means finished.

    `samples` holds the test split's per-image tensors y, pred, prob in split order; `test_rows` are the
    manifest rows of the test split, `records` the manifest.
    """
    out.mkdir(parents=True, exist_ok=True)
    lines = [",".join(HISTORY_COLUMNS)]
    lines += [",".join([str(h["epoch"]), *(_cell(h[c]) for c in HISTORY_COLUMNS[1:])]) for h in history]
    atomic_write_text(out / HISTORY, "\n".join(lines) + "\n")
    y, pred, prob = samples["y"].numpy(), samples["pred"].numpy(), samples["prob"].numpy()
    rows = [list(PREDICTION_COLUMNS)]
    rows += [
        [str(records[r].path), classes[int(a)], classes[int(p)], f"{q:.6f}"]
        for r, a, p, q in zip(test_rows, y, pred, prob)
    ]
    atomic_write(out / PREDICTIONS, lambda tmp: _write_csv(tmp, rows))
    atomic_write_text(
        out / CONFUSION, json.dumps({"classes": classes, "matrix": confusion_matrix(y, pred, len(classes))}, indent=2)
    )
    atomic_write_text(out / ACCURACY, json.dumps({metrics["technique"]: metrics["test_accuracy"]}) + "\n")
    atomic_write_text(out / METRICS, json.dumps(metrics, indent=2))


# ----------------------------------------------------------------------------------------------- reading


def read_rows(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts; a DataError naming the missing columns when the header lacks any of `columns`."""
    path = Path(path)
    fix = "rerun that technique's training stage"
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(
                    f"{path} lacks the column(s) {', '.join(missing)} (expected {','.join(columns)}); {fix}"
                )
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as err:  # binary bytes, a NUL
        raise DataError(f"{path} is not a readable CSV file ({err}); {fix}") from None
    for number, row in enumerate(rows, start=2):
        if None in row.values() or None in row:  # a row cut short (a truncated file) or one with extra cells
            raise DataError(
                f"{path} line {number} does not have one cell per column: the file is cut short or damaged; {fix}"
            )
    return rows


def read_metrics(folder: Path) -> dict:
    """A finished run's metrics.json."""
    path = Path(folder) / METRICS
    if not path.is_file():
        raise DataError(f"{path} not found: train that technique first (or pass its models/<technique> folder)")
    fix = "rerun the technique's training stage"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({err}); {fix}") from err
    if not isinstance(metrics, dict):
        raise DataError(f"{path} holds a JSON {type(metrics).__name__}, not an object of metrics; {fix}")
    return metrics


def read_history(path: Path, columns: tuple[str, ...] = HISTORY_COLUMNS) -> list[dict[str, float]]:
    """history.csv as rows of floats in epoch order (NaN for an empty cell); `columns` must be present."""
    rows = []
    for number, line in enumerate(read_rows(path, columns), start=2):
        try:
            rows.append({key: float(value) if value not in ("", None) else math.nan for key, value in line.items()})
        except (TypeError, ValueError) as err:
            raise DataError(
                f"{path} line {number} is not a history row ({','.join(HISTORY_COLUMNS)}): {err}; "
                "rerun the technique's training stage"
            ) from err
    return sorted(rows, key=lambda row: row["epoch"])


@dataclass(frozen=True)
class PredictionRow:
    """One row of test_predictions.csv: `probability` is that of the predicted class."""

    path: str
    actual: str
    predicted: str
    probability: float

    @property
    def correct(self) -> bool:
        return self.actual == self.predicted


def read_predictions(path: Path) -> list[PredictionRow]:
    rows = read_rows(path, PREDICTION_COLUMNS)
    try:
        return [PredictionRow(r["path"], r["actual"], r["predicted"], float(r["probability"])) for r in rows]
    except ValueError as err:
        raise DataError(
            f"{path}: a probability is not a number ({err}); rerun that technique's training stage"
        ) from None


@dataclass(frozen=True)
class Confusion:
    """confusion.json: `matrix[i][j]` counts the test images of class `classes[i]` predicted as `classes[j]`."""

    classes: list[str]
    matrix: list[list[int]]


def read_confusion(path: Path) -> Confusion:
    """A run's confusion.json, checked to be a square matrix of counts, one row and column per class."""
    path = Path(path)
    fix = "rerun that technique's training stage"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({err}); {fix}") from err
    classes, matrix = (data.get("classes"), data.get("matrix")) if isinstance(data, dict) else (None, None)
    n = len(classes) if isinstance(classes, list) else -1
    square = (
        isinstance(matrix, list)
        and len(matrix) == n
        and all(isinstance(row, list) and len(row) == n for row in matrix)
        and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for row in matrix for c in row)
    )
    if n < 2 or not square:
        raise DataError(
            f"{path} is not a confusion matrix (expected {{'classes': [...], 'matrix': [[counts per predicted "
            f"class] per true class]}}); {fix}"
        )
    return Confusion([str(c) for c in classes], matrix)


def finished_runs(parent: Path) -> list[tuple[Path, dict]]:
    """(folder, metrics.json) of every finished run under `parent` (models/, or a sweep's folder: one folder per
    run), in the study's order (a sweep's jobs of one technique in folder order)."""
    found = [(path.parent, read_metrics(path.parent)) for path in sorted(Path(parent).glob(f"*/{METRICS}"))]
    return sorted(found, key=lambda run: study_order(str(run[1].get("technique", ""))))


def comparison_rows(models_dir: Path) -> list[dict]:
    """metrics.json of every technique trained so far under `models_dir` (one folder each), in the study's order."""
    return [metrics for _, metrics in finished_runs(models_dir)]


def aggregate_seeds(
    rows: Iterable[Mapping],
    metric: str = "test_accuracy",
    by: Sequence[str] = ("technique",),
    also: Sequence[str] = (),
) -> list[dict]:
    """Group metrics rows (metrics.json contents) by technique (or by the fields `by`, e.g. technique and backbone)
    and summarise `metric` across their seeds (a seed sweep, `python pipelines/train.py -m
    technique=baseline,augment seed=0,1,2`, gives one row per job).

    Returns, sorted by the fields of `by` (techniques in the study's order), one dict per group:
    {<each field of by>, "n_seeds", "seeds", "<metric>_mean", "<metric>_std", "<metric>_min", "<metric>_max",
    "<metric>_values"} (the values in the order of "seeds", for a chart that shows each seed), and "<field>_mean"
    for each field of `also` that every row of the group has (e.g. seconds_per_epoch).
    The std is the sample standard deviation (n - 1), 0.0 for a single seed. Raises DataError when a
    row lacks a field of `by`, the seed or metric, or when a group has two rows with the same seed (those
    rows differ in something else, e.g. a learning rate, and must not be averaged together).
    """
    groups: dict[tuple, dict[int, Mapping]] = {}
    for row in rows:
        missing = [k for k in (*by, "seed", metric) if k not in row]
        if missing:
            raise DataError(f"a metrics row lacks {', '.join(missing)}: {dict(row)}; rerun its training job")
        group, seed = tuple(str(row[k]) for k in by), int(row["seed"])
        seen = groups.setdefault(group, {})
        if seed in seen:
            raise DataError(
                f"{', '.join(f'{k} {v!r}' for k, v in zip(by, group))} has two runs with seed {seed}: they differ "
                "in more than the seed; aggregate each setting separately"
            )
        seen[seed] = row
    summary = []
    # in the order of the fields of `by`: techniques in the study's order, other values by name
    for group in sorted(groups, key=lambda g: [study_order(v) if k == "technique" else (0, v) for k, v in zip(by, g)]):
        runs = [groups[group][s] for s in sorted(groups[group])]
        values = [float(r[metric]) for r in runs]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        extra = {
            f"{k}_mean": statistics.fmean(float(r[k]) for r in runs)
            for k in also
            if all(is_number(r.get(k)) for r in runs)
        }
        summary.append(
            {
                **dict(zip(by, group)),
                "n_seeds": len(values),
                "seeds": sorted(groups[group]),
                f"{metric}_mean": statistics.fmean(values),
                f"{metric}_std": std,
                f"{metric}_min": min(values),
                f"{metric}_max": max(values),
                f"{metric}_values": values,
                **extra,
            }
        )
    return summary


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool): what can be logged as a metric or averaged."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def numeric(row: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric values of a metrics row."""
    return {key: float(value) for key, value in row.items() if is_number(value)}


def comparison_metrics(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """The numbers of comparison rows by technique, {technique: {key: value}}: what the visualize stage writes as a
    DVC metrics file and the study's MLflow run logs as "<technique>.<key>" metrics (the same numbers in both)."""
    return {str(row["technique"]): numeric(row) for row in rows if "technique" in row}

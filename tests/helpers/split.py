"""The split stage run as the split tests run it, its report read back, the drop reasons of a report."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.study import LIMITS
from smallvision.data.manifest import REPORT
from smallvision.data.split import prepare_split
from smallvision.schema import Split, validate

COUNTS = {"train": 3, "val": 2, "test": 1}


def run_split(raw, out, split=COUNTS, seed=0, classes=None, workers=1, limits=LIMITS, exclude=None):
    split = validate(Split, split, "data.split")
    return prepare_split(
        raw,
        out,
        split=split,
        seed=seed,
        classes=classes,
        workers=workers,
        limits=limits,
        progress=False,
        exclude=exclude,
    )


def reasons(report) -> dict[str, str]:
    return {d.path: d.reason for d in report.dropped}


def report_of(out: Path) -> dict:
    return json.loads((out / REPORT).read_text(encoding="utf-8"))

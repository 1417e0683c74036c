"""Reading the CSV files the training stages write (history.csv, test_predictions.csv)."""

from __future__ import annotations

import csv
from pathlib import Path

from smallvision.errors import DataError


def read_rows(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of `path` as dicts; a DataError naming the missing columns when the header lacks any of `columns`."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path} lacks the column(s) {', '.join(missing)} (expected {','.join(columns)}); "
                            "rerun that technique's training stage")
        return list(reader)

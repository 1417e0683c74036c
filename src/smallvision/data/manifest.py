"""The manifest: which images the study uses, with their class and split. The split stage writes it; every
later stage reads it through `load_manifest` and never rebuilds paths itself.

`manifest.csv` has the columns `path,label,split,sha256`. `path` is relative to the raw folder (POSIX
separators); the raw folder itself is recorded in `split_report.json` as `raw_dir`, relative to the prepared
folder. Rows are sorted by split (train, val, test), class (in class-list order) and path, so the same inputs
and seed give a byte-identical file, and its content hash (`manifest_digest`) identifies the exact data.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from smallvision.errors import DataError

SPLITS = ("train", "val", "test")
MANIFEST = "manifest.csv"
REPORT = "split_report.json"
MANIFEST_COLUMNS = ("path", "label", "split", "sha256")


@dataclass(frozen=True)
class Record:
    """One manifest row, with `file` (the image's path, usable as is) and `target` (the class index)."""

    file: Path
    path: str
    label: str
    target: int
    split: str
    sha256: str


def write_manifest(path: Path, rows: Iterable[tuple[str, str, str, str]]) -> None:
    """`rows` of (path, label, split, sha256), already in manifest order, as `path`."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(rows)


def manifest_digest(manifest_file: Path) -> str:
    """Content hash of a manifest: identifies the exact images, labels and split."""
    if not Path(manifest_file).is_file():
        raise DataError(f"{manifest_file} not found; run the split stage first (python pipelines/split.py)")
    return hashlib.sha256(Path(manifest_file).read_bytes()).hexdigest()


def manifest_split_counts(manifest_file: Path) -> dict[str, int]:
    """How many images each split holds, from the manifest alone (the images need not be there)."""
    with open(manifest_file, newline="", encoding="utf-8") as fh:
        splits = [row["split"] for row in csv.DictReader(fh)]
    return {split: splits.count(split) for split in SPLITS}


def load_manifest(prepared_dir: Path) -> tuple[list[Record], list[str]]:
    """The manifest's records (with `file` resolved against the raw folder) and the ordered class list."""
    prepared_dir = Path(prepared_dir)
    manifest, report_file = prepared_dir / MANIFEST, prepared_dir / REPORT
    for needed in (manifest, report_file):
        if not needed.is_file():
            raise DataError(f"{needed} not found; run the split stage first (python pipelines/split.py)")
    try:
        report = json.loads(report_file.read_text(encoding="utf-8"))
        classes = [str(c) for c in report["classes"]]
        raw_dir = Path(os.path.normpath(prepared_dir / report["raw_dir"]))
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"{report_file} is damaged ({err!r}); run the split stage again") from None
    if not raw_dir.is_dir():
        raise DataError(
            f"images folder {raw_dir} (named in {report_file}) does not exist; run the download stage again"
        )
    index = {label: i for i, label in enumerate(classes)}
    records = []
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != MANIFEST_COLUMNS:
            raise DataError(
                f"{manifest} has columns {reader.fieldnames}, expected {list(MANIFEST_COLUMNS)}; run the split stage again"
            )
        for row in reader:
            if row["label"] not in index or row["split"] not in SPLITS:
                raise DataError(
                    f"{manifest} line {reader.line_num}: unknown label or split {row['label']!r}/{row['split']!r}"
                )
            records.append(
                Record(
                    raw_dir / row["path"], row["path"], row["label"], index[row["label"]], row["split"], row["sha256"]
                )
            )
    return records, classes

"""What the download stage could not bring into the raw folder, and why: special files (FIFOs, sockets, devices) in a
source folder, archive entries that extract onto the same file as an earlier one, names too long for the file
system. The list is written beside the images (`SKIPPED`, in the raw folder, so DVC tracks it with them) and read
back by discovery, so the split report lists these entries with every other file it does not use."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SKIPPED = ".smallvision-skipped.json"


@dataclass(frozen=True)
class Skipped:
    path: str  # as the source names it
    reason: str


def write_skipped(raw_dir: Path, entries: list[Skipped]) -> None:
    """Record `entries` in `raw_dir` (nothing is written when there are none)."""
    if entries:
        rows = [{"path": e.path, "reason": e.reason} for e in entries]
        (Path(raw_dir) / SKIPPED).write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def read_skipped(raw_dir: Path) -> list[Skipped]:
    path = Path(raw_dir) / SKIPPED
    if not path.is_file():
        return []
    return [Skipped(row["path"], row["reason"]) for row in json.loads(path.read_text(encoding="utf-8"))]

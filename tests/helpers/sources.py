"""The download stage's fetch_source called as the stage calls it, with conf/data/_base.yaml's settings."""

from __future__ import annotations

from pathlib import Path

from smallvision.data.sources import fetch_source

# conf/data/_base.yaml's settings (a test changes the ones it is about)
DATA = {
    "sha256": None,
    "size": None,
    "connect_timeout_s": 10,
    "max_extract_bytes": 4.0e9,
    "max_tar_header_bytes": 1.0e6,
    "max_download_bytes": 1.2e9,
    "min_download_rate": (10_000, 60),
    "synthetic": None,
    "retries": 3,
}


def fetch(source, raw, **kwargs):
    return fetch_source(str(source), raw, progress=False, **{**DATA, **kwargs})


def everything_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}

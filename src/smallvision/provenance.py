"""Where a technique's numbers came from, and which runs make one study.

Training writes `fields(...)` into metrics.json: the preset (`study`), the seed, the data source and the hash of
the manifest it trained and tested on, the git commit, a hash of the config and the time it finished. A
comparison (the report, the study's MLflow run) keeps only runs of one study: the same preset, seed and manifest
(`identity`); `mismatch` says why another run does not belong.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from smallvision.schema import Settings

# the metrics.json keys that say where a run came from ("technique" is there too, from training)
FIELDS = ("study", "seed", "dataset", "data_source", "manifest", "git_commit", "config_hash", "trained_at")
# what two runs must share to be compared in one study
IDENTITY = ("study", "seed", "manifest")
WORDS = {"study": "preset", "seed": "seed", "manifest": "manifest"}  # what each identity key is called


def git_commit(root: Path) -> str | None:
    """The commit checked out at `root`, or None when it is not a git work tree (or git is missing)."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False)
    except OSError:
        return None
    sha = result.stdout.strip()
    return sha if result.returncode == 0 and sha else None


def config_hash(cfg: Settings) -> str:
    """12 hex digits of the sha256 of the resolved config (sorted-key JSON) without `technique`, so the four
    training jobs of one study share it and any changed setting changes it."""
    settings = {key: value for key, value in cfg.model_dump().items() if key != "technique"}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:12]


def identity(cfg: Settings, manifest_digest: str) -> dict[str, Any]:
    """What makes a run part of the study `cfg` describes: its preset, its seed and its manifest (12 hex digits)."""
    return {"study": cfg.study, "seed": cfg.seed, "manifest": manifest_digest[:12]}


def fields(cfg: Settings, manifest_digest: str, commit: str | None) -> dict[str, Any]:
    """The provenance a training job writes into metrics.json (`trained_at`: now, in UTC)."""
    return {
        **identity(cfg, manifest_digest),
        "dataset": cfg.data.name,
        "data_source": cfg.data.source,
        "git_commit": commit,
        "config_hash": config_hash(cfg),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def unrecorded(row: Mapping[str, Any]) -> list[str]:
    """The identity keys a metrics row lacks (a run trained before provenance was recorded)."""
    return [key for key in IDENTITY if key not in row]


def mismatch(row: Mapping[str, Any], expected: Mapping[str, Any]) -> str | None:
    """Why the run `row` (metrics.json) is not part of the study `expected` (see `identity`), or None when it is
    (keys the row does not record are not held against it: see `unrecorded`)."""
    differ = [key for key in IDENTITY if key in row and key in expected and row[key] != expected[key]]
    if not differ:
        return None
    theirs = ", ".join(f"{WORDS[key]} {row[key]}" for key in differ)
    ours = ", ".join(f"{WORDS[key]} {expected[key]}" for key in differ)
    return f"trained with {theirs}, not this study's {ours}"

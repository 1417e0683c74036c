"""Where a run's numbers came from (smallvision.provenance): the fields training records and which runs make one
study."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers.study import config

from smallvision.tracking import (
    git_commit,
)


def test_provenance_fields_name_the_preset_seed_data_commit_and_config():
    from smallvision import provenance

    cfg = config("technique=baseline")
    saved = provenance.fields(cfg, "ab" * 32, "c0ffee")
    assert set(saved) == set(provenance.FIELDS)
    assert {k: saved[k] for k in ("preset", "seed", "dataset", "data_source", "manifest", "git_commit")} == {
        "preset": "smoke",
        "seed": 42,
        "dataset": "synthetic",
        "data_source": "synthetic",
        "manifest": "ab" * 6,
        "git_commit": "c0ffee",
    }
    same_study = provenance.config_hash(config("technique=augment"))  # the four stages of a study share it
    assert saved["config_hash"] == same_study != provenance.config_hash(config("techniques.augment.epochs=9"))
    assert provenance.mismatch({"preset": "smoke", "seed": 7}, provenance.identity(cfg, "ab" * 32)) == (
        "trained with seed 7, not this study's seed 42"
    )


def test_git_commit(tmp_path: Path) -> None:
    assert git_commit(tmp_path) is None
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "f").write_text("x")
    subprocess.run([*git, "add", "f"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "c"], cwd=tmp_path, check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert git_commit(tmp_path) == head and len(head) == 40

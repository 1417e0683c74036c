"""The manifest the split writes: read back with every file resolved, and a clear error when a file or the
manifest is gone."""

from __future__ import annotations

import shutil

import pytest
from helpers.split import report_of, run_split

from smallvision.data.manifest import load_manifest
from smallvision.errors import DataError


def test_load_manifest_resolves_files_and_complains_clearly(tmp_path, make_tree):
    raw = make_tree(tmp_path / "data" / "raw", {"Cat": 6, "Dog": 6})
    out = tmp_path / "data" / "prepared"
    run_split(raw, out)
    assert report_of(out)["raw_dir"] == "../raw"
    records, classes = load_manifest(out)
    assert classes == ["Cat", "Dog"] and len(records) == 12
    assert all(r.file.is_file() and r.file.samefile(raw / r.path) for r in records)
    shutil.rmtree(raw)
    with pytest.raises(DataError, match="run the download stage again"):
        load_manifest(out)
    with pytest.raises(DataError, match="run the split stage first"):
        load_manifest(tmp_path / "nowhere")

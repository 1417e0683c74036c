"""Files written whole or not at all, what kind of file a path is, and which folders a stage may replace: only
empty ones or its own, which carry its marker (the stages refusing them end to end: tests/e2e/test_outputs.py)."""

from __future__ import annotations

import os

import pytest

from smallvision.errors import ConfigError
from smallvision.files import (
    OUTPUT_MARKER,
    atomic_write,
    atomic_write_text,
    check_output_folder,
    check_output_place,
    nearest_existing,
    special_file_kind,
    staging_dir,
)


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = atomic_write_text(tmp_path / "metrics.json", "old")

    def half_then_fail(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    atomic_write(path, lambda tmp: tmp.write_text("new"))
    assert path.read_text() == "new" and len(list(tmp_path.iterdir())) == 1


def test_what_kind_of_file_a_path_is_and_where_writing_it_starts(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    assert special_file_kind(tmp_path / "fifo") == "a FIFO (named pipe)"
    assert special_file_kind(tmp_path) is None and special_file_kind(tmp_path / "absent") is None
    assert nearest_existing(tmp_path / "a" / "b") == tmp_path


def test_a_stage_replaces_only_an_empty_folder_or_its_own(tmp_path):
    check_output_folder(tmp_path / "absent", "split")
    own = tmp_path / "own"
    own.mkdir()
    check_output_folder(own, "split")  # empty
    (own / OUTPUT_MARKER).write_text("split\n")
    (own / "manifest.csv").write_text("x")
    check_output_folder(own, "split")
    with pytest.raises(ConfigError, match="is the split stage's output folder; the export stage would replace it"):
        check_output_folder(own, "export")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_text("x")
    with pytest.raises(ConfigError, match=r"^paths.export=photos is a folder the export stage did not make .*"):
        check_output_folder(tmp_path / "photos", "export", "paths.export", "photos")
    (tmp_path / "link").symlink_to(own)
    for path, what in [(tmp_path / "photos" / "cat.jpg", "a file"), (tmp_path / "link", "a link")]:
        with pytest.raises(ConfigError, match=f"is {what}, not a folder"):
            check_output_folder(path, "split")


def test_an_output_folder_may_not_hold_or_lie_in_another_stages_or_the_project(tmp_path):
    claimed = [("the download stage's output", "data/raw")]
    check_output_place(tmp_path, "exports", "paths.export", "export", claimed)
    for given in ("data/raw", "data", "data/raw/sub"):
        with pytest.raises(ConfigError, match=rf"paths.export={given} overlaps the download stage's output data/raw"):
            check_output_place(tmp_path, given, "paths.export", "export", claimed)
    with pytest.raises(ConfigError, match="is the project folder or holds it"):
        check_output_place(tmp_path, "..", "paths.export", "export", claimed)


def test_a_staged_folder_replaces_the_target_only_when_complete(tmp_path):
    target = tmp_path / "prepared"
    with staging_dir(target, "split") as tmp:
        (tmp / "manifest.csv").write_text("first")
    assert (target / OUTPUT_MARKER).read_text() == "split\n" and (target / "manifest.csv").read_text() == "first"
    with pytest.raises(RuntimeError), staging_dir(target, "split") as tmp:
        (tmp / "manifest.csv").write_text("half")
        raise RuntimeError("killed midway")
    assert (target / "manifest.csv").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]  # no partial folder left

"""The download stage's sources: local folders, local archives and file URLs, and a new source replacing the raw
folder only when complete (archive safety: test_archives.py; HTTP downloads: test_download.py)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from helpers.sources import DATA, everything_under, fetch
from helpers.study import config

from smallvision.data.sources import fetch_source
from smallvision.errors import ConfigError, DataError
from smallvision.files import OUTPUT_MARKER


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes (links as their target text), to compare before/after; the stage's
    marker on its raw folder aside."""
    return {
        p.relative_to(root).as_posix(): (str(p.readlink()).encode() if p.is_symlink() else p.read_bytes())
        for p in sorted(root.rglob("*"))
        if (p.is_file() or p.is_symlink()) and p != root / OUTPUT_MARKER
    }


# --------------------------------------------------------------------------- local sources


def test_local_zip_is_extracted_in_place_without_copying(tmp_path, image_zip):
    raw = tmp_path / "data" / "raw"
    before = image_zip.read_bytes()
    assert fetch_source(str(image_zip), raw, progress=False, **DATA) == raw  # the stage's call, its settings
    assert (raw / "PetImages" / "Cat" / "0.jpg").is_file() and len(tree(raw)) == 6
    assert (raw / OUTPUT_MARKER).read_text() == "download\n"  # its next run may replace it
    assert image_zip.read_bytes() == before
    # no downloads/ folder, no copy of the zip, no leftovers
    assert everything_under(tmp_path / "data") == {"raw"} | {f"raw/{p}" for p in everything_under(raw)}


@pytest.mark.parametrize(("name", "mode"), [("imgs.tar.gz", "w:gz"), ("imgs.tgz", "w:gz"), ("imgs.tar", "w")])
def test_file_url_and_tar_archives(tmp_path, make_tree, name, mode):
    source = make_tree(tmp_path / "src", {"a": 2, "b": 2})
    archive = tmp_path / name
    with tarfile.open(archive, mode) as tf:
        tf.add(source, arcname="imgs")
    raw = tmp_path / "raw"
    fetch(archive.as_uri(), raw)
    assert tree(raw) == {f"imgs/{k}": v for k, v in tree(source).items()}


def test_local_folder_is_copied_and_never_modified(tmp_path, make_tree):
    source = make_tree(tmp_path / "mine", {"a": 2, "b": 2})
    (source / "a" / "link.jpg").symlink_to(source / "b" / "0.jpg")
    before = tree(source)
    raw = tmp_path / "raw"
    fetch(source, raw)
    assert tree(raw) == before
    assert (raw / "a" / "link.jpg").is_symlink()  # kept as a link, for split to judge
    (raw / "a" / "0.jpg").write_bytes(b"changed")  # the raw copy is independent of the source
    assert tree(source) == before


def test_missing_source_and_overlapping_paths(tmp_path, make_tree):
    with pytest.raises(DataError, match="does not exist"):
        fetch(tmp_path / "nope.zip", tmp_path / "raw")
    raw = make_tree(tmp_path / "raw", {"a": 1, "b": 1})
    with pytest.raises(DataError, match="inside the raw folder"):
        fetch(raw / "a", raw)
    with pytest.raises(DataError, match="copy into itself"):
        fetch(tmp_path, raw)
    with pytest.raises(DataError, match="unsupported URL scheme 'ftp'"):
        fetch("ftp://example.org/x.zip", tmp_path / "raw2")


def test_a_new_source_replaces_the_raw_folder_only_when_complete(tmp_path, make_tree, image_zip):
    raw = tmp_path / "raw"
    fetch(image_zip, raw)
    good = tree(raw)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(image_zip.read_bytes()[:-100])
    with pytest.raises(DataError):
        fetch(broken, raw)
    assert tree(raw) == good  # the previous, complete raw folder is untouched
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no partial folder left


def test_leftovers_of_a_killed_run_are_removed(tmp_path, image_zip):
    stale = tmp_path / ".raw.abc123.partial"
    (stale / "PetImages").mkdir(parents=True)
    fetch(image_zip, tmp_path / "raw")
    assert not stale.exists()


@pytest.mark.parametrize(
    "option, value",
    [
        ("sha256", "abc"),
        ("size", -5),
        ("connect_timeout_s", 0),
        ("max_extract_bytes", "lots"),
        ("retries", -1),
    ],
)
def test_bad_settings_are_refused_before_any_work(tmp_path, option, value):
    key = {"retries": "download_retries"}.get(option, option)
    with pytest.raises(ConfigError, match=rf"data\.{key}={value!r} must be"):
        config("data=folder", "data.source=images.zip", f"data.{key}={value}")
    assert not (tmp_path / "raw").exists()

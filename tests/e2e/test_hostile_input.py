"""Hostile input to the data stages, one parametrised test per class: special files, colliding archive
entries, and caps on what is downloaded, read or allocated. Each asserts the exit status, the one-line message,
and that nothing was lost or written outside the target. The stages run in this process (helpers.entry), as their
entry scripts run them: the same checks, the same exit status."""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile
import warnings
import zipfile
from pathlib import Path

import pytest
from helpers.entry import assert_one_line_error, run_stage
from helpers.hostile import (
    SPECIAL_WORDS,
    EndlessServer,
    deadline,
    files_under,
    jpeg,
    make_special,
    scratch_checkpoint,
)
from helpers.study import LIMITS, config, make_dataset, paths

from smallvision.entrypoints import friendly_errors
from smallvision.files import atomic_write

# --------------------------------------------------------------------------- special files


@pytest.mark.parametrize("kind", ["fifo", "socket", "device"])
def test_a_special_file_is_never_read_as_a_source_or_an_image(tmp_path, monkeypatch, capsys, make_tree, kind):
    """As data.source: one line at once. Inside a source folder: not copied, listed with the reason by download and
    in the split report. Inside a predict folder: a row with the reason. Nothing blocks, nothing is left out."""
    monkeypatch.chdir(tmp_path)
    special = make_special(tmp_path / "special.jpg", kind)
    with deadline(60):
        outcome = run_stage("download", capsys, "data=folder", f"data.source={special}")
    assert_one_line_error(outcome, f"data source '{special}' is {SPECIAL_WORDS[kind]}", "only a folder or an archive")
    assert files_under(tmp_path) == {"special.jpg"}

    source = make_tree(tmp_path / "photos", {"cat": 4, "dog": 4})
    os.replace(special, source / "cat" / "special.jpg")
    with deadline(60):
        download = run_stage("download", capsys, "data=folder", f"data.source={source}")
        split = run_stage(
            "split", capsys, "data=folder", "data.workers=1", "data.split.train=0.5", "data.split.val=0.25"
        )
    assert download.code == split.code == 0, (download, split)
    reason = f"not copied: {SPECIAL_WORDS[kind]}" if kind != "device" else "symlink pointing outside the data tree"
    if kind != "device":  # a link is copied as a link (split judges it); the others cannot be copied
        assert f"cat/special.jpg: {reason}" in download.out
    report = json.loads((tmp_path / "data" / "prepared" / "split_report.json").read_text())
    assert {"path": "cat/special.jpg", "reason": reason} in report["dropped"]
    manifest = (tmp_path / "data" / "prepared" / "manifest.csv").read_text()
    assert all(f"{label}/{i}.jpg" in manifest for label in ("cat", "dog") for i in range(4))  # nothing else lost

    scratch_checkpoint(tmp_path / "models" / "baseline" / "best.ckpt")
    (source / "dog" / ".hidden.jpg").write_bytes(jpeg(1))
    (source / "dog" / "notes.txt").write_text("not an image")
    with deadline(120):
        predicted = run_stage(
            "predict", capsys, "technique=baseline", f"predict.input={source}", "predict.output=out/p.csv"
        )
    assert predicted.code == 0, predicted
    rows = {
        Path(r["path"]).relative_to(source).as_posix(): r
        for r in csv.DictReader(io.StringIO(Path("out/p.csv").read_text()))
    }
    assert set(rows) == {p for p in files_under(source) if "." in p}  # every file has a row
    assert rows["cat/special.jpg"]["error"] == f"not a regular file ({SPECIAL_WORDS[kind]})"
    assert rows["dog/.hidden.jpg"]["error"] == "hidden file" and rows["dog/notes.txt"]["error"] == "not an image"
    assert rows["cat/0.jpg"]["predicted"] in ("cat", "dog") and not rows["cat/0.jpg"]["error"]


# --------------------------------------------------------------------------- colliding archive entries

LONG = "n" * 300 + ".jpg"  # longer than any file system's 255-byte name limit
ENTRIES = [  # (name in the archive, kept as this file or None: skipped)
    ("cat/a.jpg", "cat/a.jpg"),
    ("cat/a.jpg", None),  # the same name twice: the first is kept
    ("cat/b.jpg", "cat/b.jpg"),
    ("cat/./b.jpg", None),
    ("cat//b.jpg", None),
    ("cat\\b.jpg", None),
    ("dog/x.jpg", "dog/x.jpg"),
    ("dog/x.jpg/y.jpg", None),  # a folder where a file is
    (f"dog/{LONG}", None),
] + [(f"{label}/{i}.jpg", f"{label}/{i}.jpg") for label in ("cat", "dog") for i in range(6)]


def colliding_archive(path: Path, fmt: str) -> dict[int, bytes]:
    contents = {i: jpeg(100 + i) for i in range(len(ENTRIES))}
    if fmt == "zip":
        with zipfile.ZipFile(path, "w") as zf, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate name
            for i, (name, _) in enumerate(ENTRIES):
                zf.writestr(name, contents[i])
    else:
        with tarfile.open(path, "w:gz") as tf:
            for i, (name, _) in enumerate(ENTRIES):
                info = tarfile.TarInfo(name)
                info.size = len(contents[i])
                tf.addfile(info, io.BytesIO(contents[i]))
    return contents


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_colliding_archive_entries_are_all_accounted_for(tmp_path, monkeypatch, capsys, fmt):
    """15 entries on 12 files: the first of each colliding name is extracted, every other one is listed with the
    reason by download and in the split report; an over-long name is skipped the same way, not fatal."""
    monkeypatch.chdir(tmp_path)
    archive = tmp_path / f"pets.{'zip' if fmt == 'zip' else 'tar.gz'}"
    contents = colliding_archive(archive, fmt)
    download = run_stage("download", capsys, "data=folder", f"data.source={archive}")
    split = run_stage("split", capsys, "data=folder", "data.workers=1", "data.split.train=0.5", "data.split.val=0.25")
    assert download.code == split.code == 0, (download, split)

    raw = tmp_path / "data" / "raw"
    kept = {target: contents[i] for i, (_, target) in reversed(list(enumerate(ENTRIES))) if target}
    assert {p for p in files_under(raw) if (raw / p).is_file() and not p.startswith(".")} == set(kept)
    assert all((raw / target).read_bytes() == data for target, data in kept.items())  # the first of each is kept
    report = json.loads((tmp_path / "data" / "prepared" / "split_report.json").read_text())
    dropped = [d["path"] for d in report["dropped"]]
    skipped = [name for name, target in ENTRIES if target is None]
    assert sorted(dropped) == sorted(skipped)  # every entry accounted for: extracted, or listed with its reason
    assert report["images_found"] + len(dropped) == len(ENTRIES)
    assert f"skipped {len(skipped)} entries" in download.out
    reasons = {d["path"]: d["reason"] for d in report["dropped"]}
    assert reasons["cat/./b.jpg"] == "not extracted: names the same file as the entry 'cat/b.jpg', which was kept"
    assert reasons[f"dog/{LONG}"] == "not extracted: its name is too long for this file system"
    assert "another entry already holds its path" in reasons["dog/x.jpg/y.jpg"]


# --------------------------------------------------------------------------- caps


@pytest.mark.parametrize(
    "case, overrides, message",
    [
        ("endless", ["data.max_download_bytes=1e6"], "kept sending past 1,000,000 bytes, more than data.max_download"),
        ("announced", [], "announces 5,000,000,000 bytes, more than data.max_download_bytes=1,200,000,000"),
        ("endless", ["data.size=5000"], "kept sending past 5,000 bytes, expected 5000 (data.size)"),
        ("image_size", ["techniques.baseline.image_size=10000"], "than this machine's"),
        ("cache_room", [], "GB free: free some space"),
    ],
)
def test_what_a_stage_downloads_or_allocates_is_capped(tmp_path, monkeypatch, capsys, case, overrides, message):
    """A download stops at its cap with nothing kept; an image size that cannot fit in memory, or a cache that
    cannot fit on the disk, is refused before anything is allocated, and no temporary file stays behind."""
    monkeypatch.chdir(tmp_path)
    if case in ("endless", "announced"):
        server = EndlessServer(announce=5_000_000_000 if case == "announced" else None)
        try:
            with deadline(60):
                outcome = run_stage("download", capsys, "data=folder", f"data.source={server.url}", *overrides)
        finally:
            server.close()
        assert server.sent < 50_000_000
        assert_one_line_error(outcome, message, "nothing was kept")
        assert files_under(tmp_path) == {"data", "data/downloads"}
        return
    make_dataset(tmp_path, per_class=8)
    before = files_under(tmp_path)
    if case == "image_size":
        outcome = run_stage("train", capsys, "preset=smoke", "logger.enabled=false", *overrides)
    else:  # the disk has 1000 bytes free; the training job as the entry script runs it (its Hydra parts aside)
        from smallvision import training
        from smallvision.data import cache

        monkeypatch.setattr(cache.shutil, "disk_usage", lambda _: type("Usage", (), {"free": 1000})())
        with pytest.raises(SystemExit) as stop:
            friendly_errors(training.train_technique)(config(), paths(tmp_path, "baseline"), None, False)
        err = capsys.readouterr().err
        outcome = type("Outcome", (), {"code": stop.value.code, "err": err, "out": ""})()
    assert_one_line_error(outcome, message)
    created = files_under(tmp_path) - before
    assert not [p for p in created if p.endswith(".npy") or ".tmp" in p], created
    assert "models/baseline/metrics.json" not in created


def test_an_oversized_file_is_refused_before_it_is_read_whole(tmp_path, monkeypatch):
    """Size first, then the header: a 3 MB file named .jpg is never read whole, whatever its size limit says."""
    from smallvision.data import images

    junk = tmp_path / "big.jpg"
    junk.write_bytes(os.urandom(3_000_000))
    read = []

    def counting_open(*args, **kwargs):
        fh = open(*args, **kwargs)  # noqa: SIM115 - handed to the caller's with-block
        real_read = fh.read
        fh.read = lambda *a: read.append(len(data := real_read(*a))) or data  # type: ignore[method-assign]
        return fh

    monkeypatch.setattr(images, "open", counting_open, raising=False)
    with pytest.raises(images.BadImageError, match=r"too large \(3,000,000 bytes, limit 1,000,000"):
        images.read_checked(junk, images.ImageLimits(LIMITS.max_pixels, 1_000_000))
    with pytest.raises(images.BadImageError, match="not an image"):
        images.read_checked(junk, LIMITS)  # under conf's 256 MiB: the header says it is not an image
    assert sum(read) < 100_000, sum(read)


def test_a_failing_writer_leaves_no_temporary_file(tmp_path):
    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise MemoryError("cannot allocate")

    with pytest.raises(MemoryError):
        atomic_write(tmp_path / "images.npy", fail)
    assert files_under(tmp_path) == set()

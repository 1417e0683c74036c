"""Hostile and mistaken input (issue 16), one parametrised test per class of defect: special files, colliding archive
entries, non-finite values, caps on what is downloaded, read or allocated, bad values, and a failing MLflow store.
Each asserts the exit status, the one-line message, and that nothing was lost or written outside the target. The
stages run in this process (helpers.entry), as their entry scripts: the same checks, the same exit status."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import warnings
import zipfile
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.entry import ROOT, assert_one_line_error, run_stage
from helpers.study import config, make_dataset, paths
from PIL import Image

from smallvision import networks
from smallvision.entrypoints import friendly_errors
from smallvision.files import atomic_write


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in Path(root).rglob("*")}


def jpeg(seed: int, size: int = 24) -> bytes:
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(out, format="JPEG")
    return out.getvalue()


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging (a FIFO read blocks forever)."""

    def expired(*_):
        raise TimeoutError(f"still running after {seconds} s: it hangs")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def make_special(path: Path, kind: str) -> Path:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()  # the socket file stays
    else:  # a device, reached through a link: what /dev/zero as data.source reads
        path.symlink_to("/dev/zero")
    return path


SPECIAL_WORDS = {"fifo": "a FIFO (named pipe)", "socket": "a socket", "device": "a character device"}


def scratch_checkpoint(path: Path, classes=("cat", "dog"), size: int = 48) -> Path:
    """A checkpoint as training writes it, of an untrained small convnet."""
    spec = networks.make_spec({"kind": "scratch", "image_size": size, "dropout": 0.0}, {}, list(classes))
    net = networks.build_net(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"hyper_parameters": {"spec": spec}, "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, path
    )
    return path


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


# --------------------------------------------------------------------------- non-finite values


@pytest.mark.parametrize(
    "stage, override",
    [
        ("train", "techniques.baseline.optimizer.lr=inf"),
        ("train", "techniques.baseline.optimizer.lr=nan"),
        ("train", "augmentation.rotation_range=-inf"),
        ("train", "backbone.mean=[0.5,nan,0.5]"),
        ("split", "data.split.train=nan"),
        ("download", "data.max_extract_bytes=inf"),
        ("download", "data.connect_timeout_s=nan"),
        ("visualize", "visualize.filters.step_size=inf"),
        ("log_metrics", "logger.http_timeout_s=nan"),
    ],
)
def test_a_non_finite_value_stops_the_stage_before_any_work(tmp_path, monkeypatch, capsys, stage, override):
    monkeypatch.chdir(tmp_path)
    key = override.split("=")[0]
    outcome = run_stage(stage, capsys, "data=folder", "data.source=images", override)
    assert_one_line_error(outcome, f"{key}", "must be")
    assert files_under(tmp_path) == set()


def test_a_diverging_run_stops_naming_the_epoch_and_looks_unfinished(tmp_path, monkeypatch, capsys):
    """The weights turn NaN during epoch 2: the run stops at the end of that epoch with one line and exit 2, and
    the folder holds no metrics.json (the mark of a finished run)."""
    from smallvision import training

    make_dataset(tmp_path, per_class=20)

    class Poison(training.L.Callback):
        def on_train_epoch_start(self, trainer, module) -> None:
            if trainer.current_epoch == 1:
                with torch.no_grad():
                    next(module.net.parameters()).fill_(float("nan"))

    make_trainer = training.make_trainer
    monkeypatch.setattr(training, "make_trainer", lambda *a: make_trainer(*a[:4], [*a[4], Poison()]))
    train = friendly_errors(training.train_technique)
    with pytest.raises(SystemExit) as stop:
        train(config("technique=baseline", "techniques.baseline.epochs=4"), paths(tmp_path, "baseline"), None, False)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1, err
    assert err[0].startswith("smallvision: error: training diverged in epoch 2: the training loss is nan")
    assert not (tmp_path / "models" / "baseline" / "metrics.json").exists()


# --------------------------------------------------------------------------- caps


class EndlessServer:
    """A local server whose response never ends (no Content-Length), or announces `announce` bytes."""

    def __init__(self, announce: int | None = None) -> None:
        server = self
        self.sent = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                if announce is not None:
                    self.send_header("Content-Length", str(announce))
                self.end_headers()
                try:
                    for _ in range(4096):  # 256 MB at most: the test fails long before, if the cap does not hold
                        self.wfile.write(b"\0" * 65536)
                        server.sent += 65536
                except OSError:  # the client hung up
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/endless.zip"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


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
        outcome = run_stage("train", capsys, "experiment=smoke", "logger.enabled=false", *overrides)
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
        images.read_checked(junk, max_bytes=1_000_000)
    with pytest.raises(images.BadImageError, match="not an image"):
        images.read_checked(junk)  # under the default 256 MiB: the header says it is not an image
    assert sum(read) < 100_000, sum(read)


def test_a_failing_writer_leaves_no_temporary_file(tmp_path):
    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise MemoryError("cannot allocate")

    with pytest.raises(MemoryError):
        atomic_write(tmp_path / "images.npy", fail)
    assert files_under(tmp_path) == set()


# --------------------------------------------------------------------------- bad values


def _checkpoint(kind: str, path: Path, tmp_path: Path) -> None:
    if kind == "no_hyper_parameters":
        torch.save({"state_dict": {"net.w": torch.zeros(2)}}, path)
    elif kind == "wrong_shapes":
        scratch_checkpoint(path)
        ckpt = torch.load(path, weights_only=True)
        ckpt["hyper_parameters"]["spec"]["image_size"] = 64  # the Dense layer no longer fits the weights
        torch.save(ckpt, path)
    elif kind == "runs_code":

        class Exploit:
            def __reduce__(self):
                return os.system, (f"touch {tmp_path / 'pwned'}",)

        torch.save({"hyper_parameters": {"spec": {}}, "state_dict": {"net.w": Exploit()}}, path)
    else:
        path.write_bytes(b"not a checkpoint at all" * 10)


@pytest.mark.parametrize(
    "stage, overrides, message",
    [
        ("train", ["seed=-1"], "seed=-1 must be a whole number >= 0"),
        ("split", ["seed=abc"], "seed='abc' must be a whole number >= 0"),
        ("split", ["data.workers=abc"], "data.workers='abc' must be a positive integer"),
        ("train", ["techniques.baseline.eval_batch_size=-1"], "techniques.baseline.eval_batch_size=-1 must be"),
        ("train", ["techniques.baseline.eval_batch_size=0"], "techniques.baseline.eval_batch_size=0 must be"),
        ("train", ["trainer.devices=0"], "trainer.devices=0 must be a positive integer"),
        ("predict", ["technique=nope"], "technique='nope' is unknown; allowed: baseline, augment"),
        ("predict", ["predict.output=outdir"], "predict.output='outdir' is a folder"),
        ("predict", ["predict.output=null"], "predict.output is not set"),
        ("predict", ["predict.batch_size=0"], "predict.batch_size=0 must be a positive integer"),
        ("log_metrics", ["technique=nope"], "technique='nope' is unknown"),
        ("train", ["trainer.progress=abc"], "trainer.progress='abc' must be true or false"),
        ("split", ["paths.raw=images", "paths.prepared=images/prepared"], "overlap: writing the manifest would"),
        ("predict", ["predict.output=images/cat.jpg"], "predict.output='images/cat.jpg' names an image file"),
        ("predict", ["+ckpt=no_hyper_parameters"], "is not a smallvision checkpoint (no hyper_parameters.spec"),
        ("predict", ["+ckpt=wrong_shapes"], "does not rebuild into its network (RuntimeError: Error(s) in loading"),
        ("predict", ["+ckpt=runs_code"], "not a plain weights checkpoint (loading it would call posix.system)"),
        ("predict", ["+ckpt=garbage"], "not a plain weights checkpoint (corrupt, or not a checkpoint)"),
    ],
)
def test_a_bad_value_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, stage, overrides, message):
    """Before any work: a prediction into an existing folder fails before a single image is predicted, a checkpoint
    that is not one of ours is one line (never torch's advice to load it with weights_only=False)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "cat.jpg").write_bytes(jpeg(0))
    (tmp_path / "outdir").mkdir()
    checkpoint = tmp_path / "models" / "baseline" / "best.ckpt"
    checkpoint.parent.mkdir(parents=True)
    kind = next((o.split("=")[1] for o in overrides if o.startswith("+ckpt=")), None)
    _checkpoint(kind, checkpoint, tmp_path) if kind else scratch_checkpoint(checkpoint)
    before = files_under(tmp_path)
    overrides = [o for o in overrides if not o.startswith("+ckpt=")]
    outcome = run_stage(stage, capsys, "predict.input=images", *overrides)
    assert_one_line_error(outcome, message)
    assert "weights_only" not in outcome.err
    assert files_under(tmp_path) == before  # no predictions.csv, no raw folder, nothing else


@pytest.mark.parametrize("override", ["trainer.precision=abc", "trainer.strategy=abc"])
def test_trainer_settings_lightning_refuses_are_one_line_before_any_decoding(tmp_path, capsys, override):
    from smallvision import training

    make_dataset(tmp_path, per_class=8)
    before = files_under(tmp_path)
    with pytest.raises(SystemExit) as stop:
        friendly_errors(training.train_technique)(config(override), paths(tmp_path, "baseline"), None, False)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1, err
    assert err[0].startswith("smallvision: error: Lightning cannot train with") and override.split("=")[0] in err[0]
    assert not [p for p in files_under(tmp_path) - before if p.endswith(".npy")]  # nothing decoded


# --------------------------------------------------------------------------- a failing MLflow store


def _store(tmp_path: Path, case: str) -> tuple[str, str]:
    """An MLflow URI that cannot be written, and the root cause the warning must name."""
    if case == "read_only":  # a real store, opened read-only the way SQLite opens a file it may not write
        from mlflow import MlflowClient

        db = tmp_path / "store.db"
        MlflowClient(f"sqlite:///{db}").search_experiments()
        return f"sqlite:///file:{db}?mode=ro&uri=true", "OperationalError: attempt to write a readonly database"
    if case == "not_a_database":
        (tmp_path / "not.db").write_text("not a database " * 40)
        return f"sqlite:///{tmp_path}/not.db", "DatabaseError: file is not a database"
    (tmp_path / "a_file").write_text("a file where a folder should be")
    return f"sqlite:///{tmp_path}/a_file/mlflow.db", "FileExistsError"


@pytest.mark.parametrize("case", ["read_only", "not_a_database", "folder_is_a_file"])
def test_a_store_that_cannot_be_written_is_one_warning_with_the_real_reason(tmp_path, capfd, caplog, case):
    """Training's tracker: one warning naming the root cause (not MLflow's wrapper message), and neither MLflow's
    own error report nor a SQLAlchemy traceback on stderr. The log-later script, run for real: exit 2, two lines."""
    from smallvision.tracking import StudyTracker

    uri, cause = _store(tmp_path, case)
    capfd.readouterr()
    tracker = StudyTracker(uri, "smallvision", "study", "study smoke")
    with caplog.at_level(logging.WARNING), tracker.technique_run("baseline", {"a": "1"}, {}) as run_id:
        tracker.log_metrics(run_id, {"val_acc": 0.5}, step=1)
    tracker.log_comparison([{"technique": "baseline", "test_accuracy": 0.5}])
    warnings_ = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings_) == 1 and f"failed: {cause}" in warnings_[0], warnings_
    err = capfd.readouterr().err
    assert "Traceback" not in err and "SQLAlchemy" not in err, err
    if case != "read_only":
        return
    (tmp_path / "data" / "prepared").mkdir(parents=True)
    (tmp_path / "data" / "prepared" / "manifest.csv").write_text("path,label,split,sha256\n")
    models = tmp_path / "models" / "baseline"
    models.mkdir(parents=True)
    (models / "metrics.json").write_text(json.dumps({"technique": "baseline", "test_accuracy": 0.5}))
    result = subprocess.run(
        [sys.executable, str(ROOT / "pipelines" / "log_metrics.py"), "technique=baseline"]
        + [f"logger.tracking_uri='{uri}'", "hydra.run.dir=.", "hydra.output_subdir=null"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        check=False,
    )
    output = result.stdout + result.stderr  # Hydra's logging prints the warning on stdout
    assert result.returncode == 2 and output.count("MLflow tracking at") == 1 and f"failed: {cause}" in output, output
    assert (
        result.stderr.startswith("smallvision: error: MLflow tracking failed again")
        and len(result.stderr.splitlines()) == 1
    )
    assert "Traceback" not in output and "SQLAlchemy" not in output and "ERROR" not in output, output


def test_the_stages_run_in_process_as_they_run_for_real(tmp_path):
    """The wiring the in-process runs rely on, checked once per kind of entry script with real processes."""
    commands = {
        "train": ["train.py", "seed=-1"],
        "split": ["split.py", "data.split.train=nan"],
        "download": ["download.py", "data=folder", f"data.source={make_special(tmp_path / 'fifo', 'fifo')}"],
    }
    started = {
        name: subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "pipelines" / args[0]),
                *args[1:],
                "hydra.run.dir=.",
                "hydra.output_subdir=null",
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )
        for name, args in commands.items()
    }
    deadline_at = time.monotonic() + 240
    try:
        for name, process in started.items():
            _, err = process.communicate(timeout=max(1, deadline_at - time.monotonic()))
            lines = err.strip().splitlines()
            assert process.returncode == 2 and len(lines) == 1, (name, err)
            assert lines[0].startswith("smallvision: error: ") and "Traceback" not in err, (name, err)
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
    assert {p for p in files_under(tmp_path) if not p.endswith(".log")} == {"fifo"}  # Hydra's job logs aside

"""Mistaken settings and what they lead to, one parametrised test per class: non-finite values, bad
values (and checkpoints that are not ours), a run whose loss diverges, and an MLflow store that cannot be written.
Each asserts the exit status, the one-line message, and that nothing was written. The stages run in this process
(helpers.entry); the last test runs a few as real processes, to prove that wiring."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import ROOT
from helpers.entry import assert_one_line_error, run_stage
from helpers.hostile import files_under, jpeg, make_special, scratch_checkpoint
from helpers.study import config, make_dataset, paths

from smallvision.entrypoints import friendly_errors

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


@pytest.mark.parametrize(
    "stage, override",
    [
        ("export", "export=abc"),
        ("split", "data.split=abc"),
        ("lr_find", "lr_find=7"),
        ("train", "techniques.baseline.optimizer=abc"),
    ],
)
def test_a_section_replaced_by_a_single_value_is_one_line(tmp_path, monkeypatch, capsys, stage, override):
    monkeypatch.chdir(tmp_path)
    key, value = override.split("=")
    outcome = run_stage(stage, capsys, "data=folder", "data.source=images", override)
    assert_one_line_error(outcome, f"{key}=", value, "must be a section of settings")
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
        (
            "split",
            ["paths.raw=images", "paths.prepared=images/prepared"],
            "paths.prepared=images/prepared overlaps the download stage's images",
        ),
        ("predict", ["predict.output=images/cat.jpg"], "predict.output='images/cat.jpg' names an image file"),
        ("predict", ["+ckpt=no_hyper_parameters"], "is not a smallvision checkpoint (no hyper_parameters.spec"),
        ("predict", ["+ckpt=wrong_shapes"], "does not rebuild into its network: its image_size=64 does not fit"),
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
        return (
            f"sqlite:///{tmp_path}/not.db",
            f"DataError: the MLflow store {tmp_path}/not.db is not an SQLite database",
        )
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


def test_an_unknown_backbone_fails_at_once_naming_the_value_and_the_choices(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "pipelines" / "train.py"), "backbone=nope"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "Could not find 'backbone/nope'" in result.stderr
    assert all(name in result.stderr for name in ("efficientnet_lite0", "resnet50", "vgg16"))
    assert not (tmp_path / "models").exists()

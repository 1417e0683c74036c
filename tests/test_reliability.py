"""Every foreseeable failure of an entry script is one line: exit status 2, one `smallvision: error:` line that names
the cause, no traceback, and nothing the stage did not make changed. Read-only outputs are refused before the work,
config values that cannot be resolved, damaged run files, a garbage MLflow store, input nested too deeply, a start
checkpoint that does not fit; late guards come early (a checkpoint's image size, an archive's headers, advice on a
batch too large, the `train/` + `val/` layouts); a FIFO as the MLflow store ends within seconds; the entry scripts
say what they do (`--help`) and a config group misspelt is named. The stages run in this process (helpers.entry), as
their entry scripts run them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers.entry import ROOT, Outcome, assert_one_line_error, call_main, run_stage
from helpers.hostile import deadline, jpeg, scratch_checkpoint
from helpers.project import run
from helpers.study import config, make_dataset
from test_outputs import snapshot


@contextmanager
def read_only(*folders: Path) -> Iterator[None]:
    """`folders` read-only while the block runs. Root writes past permissions, so under root they are made
    immutable instead (chattr +i: nobody, root included, may add or remove their entries)."""
    modes = {f: f.stat().st_mode for f in folders}
    root = os.geteuid() == 0
    for folder in folders:
        folder.chmod(0o555)
        if root and subprocess.run(["chattr", "+i", str(folder)], check=False, capture_output=True).returncode != 0:
            folder.chmod(stat.S_IMODE(modes[folder]))
            pytest.skip("running as root on a file system without chattr +i: no folder is read-only for root")
    try:
        yield
    finally:
        for folder, mode in modes.items():
            if root:
                subprocess.run(["chattr", "-i", str(folder)], check=True)
            folder.chmod(stat.S_IMODE(mode))


def script(stage: str, project: Path, *overrides: str, timeout: int = 300) -> Outcome:
    """`python pipelines/<stage>.py <overrides>` in `project`, Hydra's run folder beside it (not in it)."""
    hydra_dir = f"hydra.run.dir={project.parent / 'hydra-run'}"
    done = run(
        [sys.executable, str(ROOT / "pipelines" / f"{stage}.py"), hydra_dir, *overrides], project, timeout, False
    )
    return Outcome(done.returncode, done.stdout, done.stderr)


def trained_files(root: Path, techniques=("baseline", "augment"), **provenance) -> None:
    """Finished runs' files as training writes them (no checkpoint): metrics.json, test_predictions.csv, history.csv,
    confusion.json, for comparing and drawing."""
    from test_evidence import fake_run

    for technique in techniques:
        folder = fake_run(root / "models" / technique, technique, [True, False, True] * 8, **provenance)
        (folder / "history.csv").write_text("epoch,train_loss,train_acc,val_loss,val_acc\n1,0.7,0.5,0.7,0.5\n")
        (folder / "confusion.json").write_text(json.dumps({"classes": ["cat", "dog"], "matrix": [[8, 4], [4, 8]]}))


# --------------------------------------------------------------------------- read-only outputs, refused first


def test_a_read_only_models_folder_is_refused_before_training(tmp_path):
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    before = snapshot(project)
    with read_only(project / "models"):
        outcome = script("train", project, "preset=smoke", "logger.enabled=false")
    assert_one_line_error(outcome, "paths.models=models cannot be written", "models is read-only")
    assert snapshot(project) == before


def test_a_read_only_predict_output_folder_is_refused_before_predicting(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    scratch_checkpoint(tmp_path / "models" / "baseline" / "best.ckpt")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(jpeg(1))
    (tmp_path / "out").mkdir()
    before = snapshot(tmp_path)
    with read_only(tmp_path / "out"):
        outcome = run_stage("predict", capsys, "predict.input=photos", "predict.output=out/p.csv")
    assert_one_line_error(outcome, "predict.output='out/p.csv' cannot be written", "out is read-only")
    assert "predicted" not in outcome.out  # refused before any image was read
    assert snapshot(tmp_path) == before


def test_a_read_only_export_target_is_refused_before_exporting(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shipped").mkdir()
    (tmp_path / "shipped" / "old.txt").write_text("kept")
    before = snapshot(tmp_path)
    with read_only(tmp_path / "shipped"):
        outcome = run_stage("export", capsys, "paths.export=shipped/export")
    assert_one_line_error(outcome, "paths.export=shipped/export cannot be written", "shipped is read-only")
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- values that cannot be resolved


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.source=${oc.env:NO_SUCH_VAR}", "data.source cannot be resolved: Environment variable 'NO_SUCH_VAR'"),
        ("seed=${seed}", "seed cannot be resolved: Recursive interpolation detected"),
        ("data.split.train=${no.such.key}", "data.split.train cannot be resolved: Interpolation key 'no.such.key'"),
    ],
)
@pytest.mark.parametrize("stage", ["download", "split", "train"])
def test_a_value_that_cannot_be_resolved_is_named(tmp_path, monkeypatch, capsys, stage, override, message):
    monkeypatch.chdir(tmp_path)
    outcome = run_stage(stage, capsys, "preset=smoke", override)
    assert_one_line_error(outcome, message)
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- damaged run files

DAMAGE = {
    "metrics_list": ("baseline/metrics.json", b"[1, 2, 3]", "holds a JSON list, not an object of metrics"),
    "binary_predictions": ("augment/test_predictions.csv", bytes(range(256)) * 4, "is not a readable CSV file"),
    "truncated_predictions": (
        "augment/test_predictions.csv",
        b"path,actual,predicted,probability\nimg_000.jpg,cat,cat,0.9\nimg_001.jpg,do",
        "line 3 does not have one cell per column",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_compare_names_a_damaged_run_file(tmp_path, monkeypatch, capsys, damage):
    monkeypatch.chdir(tmp_path)
    trained_files(tmp_path)
    name, data, message = DAMAGE[damage]
    (tmp_path / "models" / name).write_bytes(data)
    outcome = call_main("compare", ["baseline", "augment"], capsys)
    assert_one_line_error(outcome, f"models/{name}", message)


@pytest.mark.parametrize("damage", ["metrics_list", "truncated_predictions"])
def test_visualize_and_log_metrics_name_a_damaged_run_file(tmp_path, monkeypatch, capsys, damage):
    from smallvision.data.manifest import MANIFEST, manifest_digest
    from smallvision.provenance import identity

    monkeypatch.chdir(tmp_path)
    make_dataset(tmp_path, per_class=8)
    trained_files(tmp_path, **identity(config(), manifest_digest(tmp_path / "data" / "prepared" / MANIFEST)))
    for technique in ("baseline", "augment"):
        scratch_checkpoint(tmp_path / "models" / technique / "best.ckpt", classes=("circle", "square"))
    name, data, message = DAMAGE[damage]
    (tmp_path / "models" / name).write_bytes(data)
    drawn = run_stage("visualize", capsys, "preset=smoke", "logger.enabled=false")
    assert_one_line_error(drawn, f"models/{name}", message)
    if damage == "metrics_list":  # log_metrics reads a run's metrics.json, not its predictions
        logged = run_stage("log_metrics", capsys, "preset=smoke", "technique=baseline")
        assert_one_line_error(logged, f"models/{name}", message)


# --------------------------------------------------------------------------- MLflow stores that are not one

STORES = {
    "garbage": ("is not an SQLite database", lambda path: path.write_bytes(b"not a database " * 100)),
    "fifo": ("is a FIFO (named pipe), not an SQLite database file", lambda path: os.mkfifo(path)),
}


@pytest.mark.parametrize("store", list(STORES))
def test_predict_from_a_store_that_is_not_one_is_one_line_at_once(tmp_path, monkeypatch, capsys, store):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    message, make = STORES[store]
    make(tmp_path / "mlflow.db")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(jpeg(1))
    with deadline(20):  # MLflow alone retries a FIFO for minutes
        outcome = run_stage(
            "predict", capsys, "predict.model=models:/smallvision-classifier@champion", "predict.input=photos"
        )
    assert_one_line_error(outcome, "predict.model='models:/smallvision-classifier@champion' cannot be loaded", message)
    assert not (tmp_path / "predictions.csv").exists()


def test_training_with_a_fifo_as_the_store_warns_once_and_goes_on(tmp_path):
    """The stage's own warning, at once: not minutes of MLflow's retries and warnings before it."""
    project = make_dataset(tmp_path / "project", per_class=8)
    os.mkfifo(project / "mlflow.db")
    outcome = script("train", project, "preset=smoke", "techniques.baseline.epochs=1", timeout=240)
    assert outcome.code == 0, outcome
    said = (outcome.out + outcome.err).splitlines()
    warnings = [line for line in said if "WARNING" in line or "mlflow" in line.lower()]
    assert len(warnings) == 1 and "is a FIFO (named pipe), not an SQLite database file" in warnings[0], said
    assert (project / "models" / "baseline" / "metrics.json").is_file()
    fit = [line for line in said if "`Trainer.fit` stopped" in line]
    assert len(fit) == 1, said  # each log line once: Lightning's through the project's logging, not also its own


# --------------------------------------------------------------------------- input that breaks a reader


def test_a_folder_source_nested_too_deeply_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    deep = tmp_path / "deep"
    deep.mkdir()
    folder = deep
    for _ in range(1_200):  # one level at a time: os.makedirs recurses too
        folder = folder / "d"
        folder.mkdir()
    (folder / "a.jpg").write_bytes(jpeg(1))
    outcome = run_stage("download", capsys, "data=folder", f"data.source={deep}")
    assert_one_line_error(outcome, f"data source '{deep}'", "is nested too deeply")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep"]


def test_a_fine_tune_start_whose_head_does_not_fit_is_one_line(tmp_path):
    import torch

    from smallvision import networks

    project = make_dataset(tmp_path / "project", per_class=8)
    settings = config()
    spec = networks.make_spec(settings.techniques["feature_extract"], settings.backbone, ["a", "b", "c"], 1280)
    start = project / "models" / "feature_extract" / "best.ckpt"
    start.parent.mkdir(parents=True)
    state = {f"net.{k}": v for k, v in networks.build_net(spec).state_dict().items()}
    torch.save({"hyper_parameters": {"spec": spec}, "state_dict": state}, start)
    outcome = script("train", project, "preset=smoke", "logger.enabled=false", "technique=fine_tune")
    assert_one_line_error(outcome, f"fine-tune's start {start} does not fit its head", "size mismatch")


# --------------------------------------------------------------------------- onboarding


@pytest.mark.parametrize("stage", ["train", "predict", "export"])
def test_help_names_the_script_its_key_settings_and_the_techniques(tmp_path, stage):
    outcome = script(stage, tmp_path, "--help")
    assert outcome.code == 0, outcome
    assert f"pipelines/{stage}.py, a smallvision stage" in outcome.out
    assert f"python pipelines/{stage}.py" in outcome.out  # the script's own usage lines
    assert "technique=<baseline|augment|feature_extract|fine_tune" in outcome.out
    assert "== Key settings ==" in outcome.out and "preset=<name>" in outcome.out
    assert "powered by Hydra" not in outcome.out


@pytest.mark.parametrize("override", ["techniques=augment", "no_such_group=x", "no.such.key=1"])
def test_a_config_group_or_key_that_does_not_exist_is_one_line(tmp_path, override):
    outcome = script("split", tmp_path, override)
    name = override.split("=")[0]
    assert_one_line_error(outcome, f"'{name}' is neither a config group nor a key", "the groups are augmentation")
    assert not any(tmp_path.iterdir())

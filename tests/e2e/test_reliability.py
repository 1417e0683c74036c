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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers.entry import ROOT, Outcome, assert_one_line_error, call_main, run_stage
from helpers.hostile import deadline, jpeg, scratch_checkpoint
from helpers.project import run
from helpers.study import config, make_dataset

from e2e.test_outputs import snapshot


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
    from helpers.fake_runs import fake_run

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
    started = time.monotonic()
    outcome = script("train", project, "preset=smoke", "techniques.baseline.epochs=1", timeout=240)
    assert outcome.code == 0, outcome
    assert time.monotonic() - started < 60  # ~10 s here; MLflow's own retries alone took ~100 s
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
    try:
        outcome = run_stage("download", capsys, "data=folder", f"data.source={deep}")
        assert_one_line_error(outcome, f"data source '{deep}'", "is nested too deeply")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["deep"]
    finally:  # one level at a time: pytest's own clean-up of old temporary folders recurses
        (folder / "a.jpg").unlink()
        while folder != tmp_path:
            folder.rmdir()
            folder = folder.parent


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


# one template serves every script: the default suite reads train's help; the others (a new interpreter each) are slow
@pytest.mark.parametrize(
    "stage", ["train", pytest.param("predict", marks=pytest.mark.slow), pytest.param("export", marks=pytest.mark.slow)]
)
def test_help_names_the_script_its_key_settings_and_the_techniques(tmp_path, stage):
    outcome = script(stage, tmp_path, "--help")
    assert outcome.code == 0, outcome
    assert f"pipelines/{stage}.py, a smallvision stage" in outcome.out
    assert f"python pipelines/{stage}.py" in outcome.out  # the script's own usage lines
    assert "technique=<baseline|augment|modern|feature_extract|fine_tune>" in outcome.out
    assert "== Key settings ==" in outcome.out and "preset=<name>" in outcome.out
    assert "powered by Hydra" not in outcome.out


@pytest.mark.parametrize(
    "override",
    [
        "techniques=augment",
        pytest.param("no_such_group=x", marks=pytest.mark.slow),  # the same Hydra error path, a new interpreter each
        pytest.param("no.such.key=1", marks=pytest.mark.slow),
    ],
)
def test_a_config_group_or_key_that_does_not_exist_is_one_line(tmp_path, override):
    outcome = script("split", tmp_path, override)
    name = override.split("=")[0]
    assert_one_line_error(outcome, f"'{name}' is neither a config group nor a key", "the groups are augmentation")
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- guards that come first


def test_a_checkpoint_whose_image_size_does_not_fit_its_weights_is_refused_before_building(
    tmp_path, monkeypatch, capsys
):
    """A small file claiming 1,800 px would allocate gigabytes for its dense layer before the mismatch showed."""
    import resource

    import torch

    monkeypatch.chdir(tmp_path)
    checkpoint = scratch_checkpoint(tmp_path / "models" / "baseline" / "best.ckpt", size=64)
    saved = torch.load(checkpoint, weights_only=True)
    saved["hyper_parameters"]["spec"]["image_size"] = 1_800
    torch.save(saved, checkpoint)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(jpeg(1))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcome = run_stage("predict", capsys, "predict.input=photos", "predict.output=p.csv")
    assert_one_line_error(
        outcome, "does not rebuild into its network: its image_size=1800 does not fit", "(512, 1548800) at that"
    )
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) * 1024  # ru_maxrss: KiB on Linux
    assert grown < 1e9, f"{grown / 1e9:.1f} GB allocated before the refusal"


def test_a_tar_whose_extended_header_passes_the_limit_is_refused_before_it_is_read(tmp_path, monkeypatch, capsys):
    import io
    import tarfile

    monkeypatch.chdir(tmp_path)
    archive = tmp_path / "pets.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("cat/0.jpg")
        info.pax_headers = {"comment": "x" * 3_000_000}  # compresses to a few kB
        image = jpeg(1)
        info.size = len(image)
        tf.addfile(info, io.BytesIO(image))
    assert archive.stat().st_size < 100_000
    outcome = run_stage(
        "download",
        capsys,
        "data=folder",
        f"data.source={archive}",
        "data.max_extract_bytes=1e6",
        "data.max_tar_header_bytes=1e7",
    )
    assert_one_line_error(
        outcome, "declares more than data.max_extract_bytes=1,000,000 bytes", "an extended header 3,0"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pets.tar.gz"]


def test_a_batch_too_large_for_any_image_size_blames_the_batch(tmp_path, monkeypatch, capsys):
    """Not an image size below the convnet's minimum (46 px), which the schema would refuse."""
    monkeypatch.chdir(tmp_path)
    outcome = run_stage("train", capsys, "preset=smoke", "techniques.baseline.batch_size=1000000")
    assert_one_line_error(outcome, "techniques.baseline.batch_size=1000000 needs at least", "lower the batch size")
    assert "46 px" in outcome.err


# --------------------------------------------------------------------------- pre-split layouts


def test_a_class_only_in_val_is_named(tmp_path, monkeypatch, capsys, make_tree):
    monkeypatch.chdir(tmp_path)
    make_tree(tmp_path / "data" / "raw" / "train", {"cat": 6, "dog": 6})
    make_tree(tmp_path / "data" / "raw" / "val", {"cat": 3, "dog": 3, "bird": 3}, seed=1)
    outcome = run_stage("split", capsys, "data=folder", "data.workers=1")
    assert_one_line_error(outcome, "class 'bird' has no valid images in train/ (train), only in val/")
    assert not (tmp_path / "data" / "prepared").exists()


@pytest.mark.parametrize("empty", ["val", "test", "validation"])
def test_an_empty_split_folder_is_refused_not_ignored(tmp_path, monkeypatch, capsys, make_tree, empty):
    monkeypatch.chdir(tmp_path)
    raw = tmp_path / "data" / "raw"
    make_tree(raw / "train", {"cat": 6, "dog": 6})
    if empty == "test":  # beside a given val/: the tree would read as train/ + val/
        make_tree(raw / "val", {"cat": 3, "dog": 3}, seed=1)
    (raw / empty).mkdir()
    outcome = run_stage("split", capsys, "data=folder", "data.workers=1")
    assert_one_line_error(outcome, f"looks pre-split, but {empty}/ holds no images")
    assert not (tmp_path / "data" / "prepared").exists()


def test_a_read_only_project_folder_is_one_line(tmp_path):
    """Hydra writes its run folder (outputs/...) and log before any project code runs: its error is one line too."""
    project = tmp_path / "project"
    project.mkdir()
    with read_only(project):
        done = run([sys.executable, str(ROOT / "pipelines" / "split.py")], project, 120, False)
    outcome = Outcome(done.returncode, done.stdout, done.stderr)
    assert_one_line_error(outcome, "outputs", "make it writable or give another path", "hydra.run.dir=")
    assert not any(project.iterdir())


@pytest.mark.parametrize(
    ("given", "val", "carved"), [("val", "3", 3), ("val", "0.25", 2), ("test", "3", 3), ("test", "0.25", 2)]
)
def test_a_pre_split_layout_checks_only_the_amount_it_uses(
    tmp_path, monkeypatch, capsys, make_tree, given, val, carved
):
    """train/ + val/ or train/ + test/: validation is carved out of train/ by data.split.val alone; the unused
    train/test defaults (fractions) neither mix with a count nor add up past 1 with it."""
    import csv

    monkeypatch.chdir(tmp_path)
    make_tree(tmp_path / "data" / "raw" / "train", {"cat": 8, "dog": 8})
    make_tree(tmp_path / "data" / "raw" / given, {"cat": 3, "dog": 3}, seed=1)
    outcome = run_stage("split", capsys, "data=folder", "data.workers=1", f"data.split.val={val}")
    assert outcome.code == 0, outcome
    with open(tmp_path / "data" / "prepared" / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sum(r["split"] == "val" and r["label"] == "cat" for r in rows) == carved
    assert sum(r["split"] == "test" for r in rows) == 6  # the given folder is the test split

"""Interrupted and repeated runs: SIGKILL mid-epoch under `dvc repro` and run directly, Ctrl-C (a real SIGINT)
with MLflow tracking, and the same seed giving the same outputs. Everything runs on generated images, offline.

What a kill leaves: DVC removes a stage's outputs before it runs it and writes dvc.lock only after the command
succeeds, so a killed stage is never recorded; a direct run removes an earlier run's metrics.json (the "finished"
marker, written last and atomically) before it trains. A rerun starts from the first epoch: it does not resume
from best.ckpt (that file is the best-validation weights, not a resumable training state).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.project import (
    ROOT,
    compose_params,
    copy_project,
    dvc_status,
    lock_stages,
    run,
    signal_group,
    start,
    wait_mid_training,
)
from helpers.study import config, make_dataset, paths, small_vgg_classifier

from smallvision.interrupts import ctrl_c_held_back, reliable_ctrl_c
from smallvision.tracking.tracker import StudyTracker
from smallvision.training import train_technique

HYDRA = ["--config-dir", ".", "--config-name", "params", "hydra.output_subdir=null", "hydra.run.dir=."]
# epochs of ~1-2 s on 2 CPU cores (100 training images at 96 px), so a kill after the first checkpoint lands
# mid-training with several epochs still to go
LONG_EPOCHS = [
    "experiment=smoke",
    "logger.enabled=false",
    "data.synthetic.per_class=100",
    "techniques.baseline.image_size=96",
    "techniques.baseline.epochs=4",
]


@pytest.mark.slow
def test_sigkill_mid_epoch_is_never_taken_as_finished_and_a_rerun_starts_clean(tmp_path):
    project = copy_project(tmp_path / "project")
    compose_params(project, *LONG_EPOCHS)
    out = project / "models" / "baseline"

    # 1. under DVC: kill the whole process group (dvc, the shell, python) mid-epoch 2
    log = tmp_path / "run.log"
    proc = start([sys.executable, "-m", "dvc", "repro", "train-baseline"], project, log)
    wait_mid_training(proc, out / "best.ckpt", log)
    signal_group(proc, signal.SIGKILL)
    proc.wait(timeout=30)  # reaped: DVC's stale-lock check treats a zombie's pid as alive
    assert proc.returncode == -signal.SIGKILL
    assert (out / "best.ckpt").exists()  # epoch 1's weights are there ...
    assert not (out / "metrics.json").exists()  # ... but nothing says finished
    assert "train-baseline" not in lock_stages(project)  # DVC recorded nothing for the stage
    assert {"download", "split"} <= lock_stages(project)  # (the stages before it did finish)
    assert set(dvc_status(project, "train-baseline")) == {"train-baseline"}

    # 2. the rerun: DVC removes the partial outputs and trains from epoch 1 (no resume) to the end
    rerun = run([sys.executable, "-m", "dvc", "repro", "train-baseline"], project)
    assert "Running stage 'train-baseline'" in rerun.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_images"] == 50 and 0 <= metrics["test_accuracy"] <= 1
    assert metrics["ci95_low"] <= metrics["test_accuracy"] <= metrics["ci95_high"]
    history = (out / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["1", "2", "3", "4"]
    assert len((out / "test_predictions.csv").read_text().splitlines()) == 51
    assert dvc_status(project, "train-baseline") == {}

    # 3. run directly (no DVC to remove outputs): the finished run's metrics.json goes before training starts,
    # so the killed run's folder does not look finished, and DVC sees the stage as changed
    direct = start([sys.executable, "pipelines/train.py", *HYDRA, "technique=baseline"], project, log)
    wait_mid_training(direct, out / "best.ckpt", log)
    signal_group(direct, signal.SIGKILL)
    direct.wait(timeout=30)
    assert not (out / "metrics.json").exists()
    outs = [e["changed outs"] for e in dvc_status(project, "train-baseline")["train-baseline"] if "changed outs" in e]
    assert outs and outs[0]["models/baseline/metrics.json"] == "deleted"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time a running process has used so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CTRL_C_BOUND_S = 10  # "within seconds" (README): ~2-4 s measured on 2 idle cores


def test_ctrl_c_mid_training_exits_with_status_1_within_seconds_and_ends_the_mlflow_runs_killed(tmp_path):
    from mlflow import MlflowClient

    root = make_dataset(tmp_path / "project", per_class=12)
    log = tmp_path / "run.log"
    out = root / "models" / "baseline"
    out.mkdir(parents=True)
    (out / "metrics.json").write_text('{"test_accuracy": 1.0}')  # an earlier run's: must not survive the new one
    uri = f"sqlite:///{root.as_posix()}/mlflow.db"
    cmd = [
        sys.executable,
        str(ROOT / "pipelines" / "train.py"),
        "hydra.output_subdir=null",
        "hydra.run.dir=.",
        "technique=baseline",
        "data=synthetic",
        "trainer.progress=false",
        "techniques.baseline.image_size=64",
        "techniques.baseline.epochs=10000",  # far more than it can run before the signal
    ]
    proc = start(cmd, root, log, MLFLOW_TRACKING_URI=uri)
    wait_mid_training(proc, out / "best.ckpt", log)
    cpu_before, children_before = _cpu_seconds(proc.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    signal_group(proc, signal.SIGINT)  # what Ctrl-C in a terminal does: SIGINT to the foreground group
    sent = time.monotonic()
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        signal_group(proc, signal.SIGKILL)
        pytest.fail(f"the run did not stop within 120 s of Ctrl-C:\n{log.read_text()[-5000:]}")
    stopped_after = time.monotonic() - sent
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_after_signal = children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime
    cpu_after_signal -= cpu_before
    output = log.read_text()
    print(f"exit status {proc.returncode}, {stopped_after:.1f} s after SIGINT ({cpu_after_signal:.1f} CPU s)")
    assert proc.returncode == 1, output[-3000:]
    assert stopped_after < CTRL_C_BOUND_S, (
        f"stopped {stopped_after:.1f} s after Ctrl-C, using {cpu_after_signal:.1f} s of CPU (a loaded machine?)"
    )
    assert "Detected KeyboardInterrupt" in output  # it landed in trainer.fit, mid-training
    assert "Traceback" not in output
    assert not (out / "metrics.json").exists()

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("smallvision").experiment_id])
    statuses = {r.data.tags.get("technique", "parent"): r.info.status for r in runs}
    assert statuses == {"baseline": "KILLED", "parent": "KILLED"}, output[-3000:]


def _ctrl_c_to_self() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # the handler runs here, on the main thread, before the next line


@pytest.fixture
def ctrl_c_raises():
    """Ctrl-C as the entry scripts set it up (`reliable_ctrl_c`), restored afterwards."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    reliable_ctrl_c()
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_during_a_tracking_write_lands_when_the_write_is_done(tmp_path, ctrl_c_raises):
    tracker = StudyTracker(f"sqlite:///{tmp_path.as_posix()}/mlflow.db", "smallvision", "key", "study")
    done = []

    def write() -> str:
        run_id = tracker.runs.start_child("baseline", {}, {})
        _ctrl_c_to_self()  # mid-way through the store's writes
        tracker.client.log_metric(run_id, "val_accuracy", 0.5)
        done.append(run_id)
        return run_id

    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        tracker.guarded(write)
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C is handled as before the write
    assert len(done) == 1  # the write ran to its end first
    assert tracker.enabled  # and the store is still usable: the run ends at once, with its metric
    started = time.monotonic()
    tracker.runs.end(done[0], "KILLED")
    assert time.monotonic() - started < 5  # not MLflow's 20 s SQLite busy timeout
    run = tracker.client.get_run(done[0])
    assert run.info.status == "KILLED" and run.data.metrics == {"val_accuracy": 0.5}
    with pytest.raises(KeyboardInterrupt):  # and raises again at once
        _ctrl_c_to_self()


def test_a_ctrl_c_during_a_failing_write_is_not_lost_with_the_error(ctrl_c_raises):
    def fail() -> None:
        _ctrl_c_to_self()
        raise OSError("store gone")

    with pytest.raises(KeyboardInterrupt) as caught, ctrl_c_held_back():
        fail()
    assert isinstance(caught.value.__context__, OSError)
    with ctrl_c_held_back():  # no Ctrl-C, nothing raised
        pass


def test_ctrl_c_is_left_alone_where_it_does_not_raise(ctrl_c_raises):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # e.g. a background job
    with ctrl_c_held_back():
        _ctrl_c_to_self()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


# -- the same seed gives the same outputs ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("repeat"), per_class=40)


def _state(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def head(data) -> Path:
    """A feature-extract checkpoint for fine-tune to start from."""
    cfg = config("technique=feature_extract", "techniques.feature_extract.epochs=1")
    train_technique(cfg, paths(data, "fe_head"), progress=False)
    return data / "models" / "fe_head" / "best.ckpt"


@pytest.mark.parametrize("technique", ["baseline", "augment", "feature_extract", "fine_tune"])
def test_same_seed_twice_gives_identical_outputs(data, head, technique):
    cfg = config(f"technique={technique}", f"techniques.{technique}.epochs=2")
    runs = [data / "models" / f"{technique}_{i}" for i in (1, 2)]
    metrics = []
    for run_dir in runs:
        where = paths(data, run_dir.name)
        where.head_checkpoint = head
        metrics.append(train_technique(cfg, where, progress=False))
    for m in metrics:
        m.pop("wall_time_s"), m.pop("trained_at"), m.pop("seconds_per_epoch")  # when and how fast, not what
    assert metrics[0] == metrics[1]
    assert metrics[0]["test_images"] == 20 and metrics[0]["seed"] == 42
    for name in ("test_predictions.csv", "history.csv", "confusion.json"):
        assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes(), name
    first, second = _state(runs[0] / "best.ckpt"), _state(runs[1] / "best.ckpt")
    assert first.keys() == second.keys()
    assert [k for k in first if not torch.equal(first[k], second[k])] == []  # bit for bit, on CPU


def test_another_seed_gives_other_weights(data):
    a = train_technique(
        config("technique=baseline", "techniques.baseline.epochs=1"), paths(data, "seed_a"), progress=False
    )
    b = train_technique(
        config("technique=baseline", "techniques.baseline.epochs=1", "seed=7"), paths(data, "seed_b"), progress=False
    )
    assert a["seed"] != b["seed"]
    first, second = _state(data / "models/seed_a/best.ckpt"), _state(data / "models/seed_b/best.ckpt")
    assert any(not torch.equal(first[k], second[k]) for k in first)  # the seed is what made the runs equal


def test_a_direct_run_deletes_the_old_metrics_json_first_and_writes_the_new_one_last_and_atomically(data, monkeypatch):
    """Run directly (no DVC to remove outputs), a run that dies mid-training leaves no metrics.json, even where a
    finished run had left one; a run that finishes writes it last, by a rename (never half-written)."""
    from smallvision import files
    from smallvision.modules.classifier import ClassifierModule

    out = data / "models" / "direct"
    out.mkdir(parents=True)
    (out / "metrics.json").write_text('{"test_accuracy": 1.0}')  # a finished earlier run's
    real_step = ClassifierModule.training_step

    def dies_in_epoch_2(self, batch, batch_idx):  # as a kill or an out-of-memory would, after epoch 1's checkpoint
        if self.current_epoch == 1:
            raise MemoryError("killed mid-training")
        return real_step(self, batch, batch_idx)

    cfg = config("technique=baseline", "techniques.baseline.epochs=3")
    with monkeypatch.context() as patch:
        patch.setattr(ClassifierModule, "training_step", dies_in_epoch_2)
        with pytest.raises(MemoryError, match="killed mid-training"):
            train_technique(cfg, paths(data, "direct"), progress=False)
    assert (out / "best.ckpt").exists()  # epoch 1's weights are there ...
    assert not (out / "metrics.json").exists()  # ... but nothing says finished

    renamed = []
    real_replace = files.os.replace

    def replace(src, dst):
        renamed.append((Path(src).name, Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    metrics = train_technique(cfg, paths(data, "direct"), progress=False)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    targets = [dst for _, dst in renamed]
    assert set(targets) >= {"history.csv", "test_predictions.csv", "confusion.json", "metrics.json"}
    assert targets[-1] == "metrics.json" and targets.count("metrics.json") == 1  # last, once
    assert renamed[-1][0].startswith(".metrics.")  # from a hidden temporary file beside it
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


# -- cheap gaps in the bad-input list (untrusted checkpoint, a size the model cannot take) --------------


def test_a_checkpoint_that_runs_code_when_unpickled_is_refused(tmp_path):
    from smallvision import networks
    from smallvision.errors import DataError

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    ckpt = tmp_path / "best.ckpt"
    torch.save({"hyper_parameters": {"spec": {"network": "scratch"}}, "state_dict": {"net.w": Exploit()}}, ckpt)
    with pytest.raises(DataError, match=r"refusing to load .*best\.ckpt"):
        networks.load_checkpoint(ckpt)
    assert not marker.exists()


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "techniques.baseline.image_size=16",
            r"techniques\.baseline\.image_size=16 is too small for the small convnet",
        ),
        ("techniques.baseline.batch_size=-4", r"techniques\.baseline\.batch_size=-4 must be a positive integer"),
    ],
    ids=["image_size_too_small", "negative_batch_size"],
)
def test_a_config_the_model_cannot_take_stops_before_training(data, override, message, monkeypatch):
    from smallvision import training
    from smallvision.errors import ConfigError

    def no_heavy_work(*args, **kwargs):
        raise AssertionError("images were decoded before the config was checked")

    monkeypatch.setattr(training, "image_array", no_heavy_work)
    with pytest.raises(ConfigError, match=message):
        train_technique(config("technique=baseline", override), paths(data, "bad_config"), progress=False)
    assert not (data / "models" / "bad_config" / "metrics.json").exists()
    assert not (data / "models" / "bad_config" / "best.ckpt").exists()


def test_an_image_size_a_transfer_backbone_cannot_take_names_the_size():
    from smallvision.errors import ConfigError
    from smallvision.models import backbones

    bb = config("backbone=vgg16", "backbone.weights.source=none").backbone.model_dump()
    with small_vgg_classifier():
        base = backbones.create_backbone(bb, allow_random=True)
    with pytest.raises(ConfigError, match=r"image_size=16 does not fit .*use the backbone's image_size or larger"):
        backbones.feature_dim(base, 16, "flatten")  # VGG16's five 2x2 pools leave nothing of 16 px


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

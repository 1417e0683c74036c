"""A technique that starts from trained weights (fine-tune: feature-extract's head) validates them as epoch 0 and
keeps them unless a trained epoch is strictly better on validation; the techniques that start from random weights
have no epoch 0. Trained for real on generated images (64 px shapes), seconds each on a CPU."""

from __future__ import annotations

import html
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.study import Weights, add_callbacks, config, make_dataset
from mlflow.tracking import MlflowClient

from smallvision import evidence, starting_point
from smallvision.runs import read_history, read_predictions
from smallvision.tracking import StudyTracker, lightning_logger
from smallvision.training import Paths, train_technique
from smallvision.visualize import comparison, sections
from smallvision.visualize.sections_learned import finetuning_section

# a head that learned almost nothing (one epoch at a tiny rate): fine-tuning it at a normal rate clearly helps
UNTRAINED_HEAD = ("techniques.feature_extract.epochs=1", "techniques.feature_extract.optimizer.lr=1e-7")
WRECKING_LR = "techniques.fine_tune.optimizer.lr=1.0"  # RMSprop at 1.0 wrecks the base within an epoch
HELPFUL_LR = "techniques.fine_tune.optimizer.lr=1e-3"


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("starting_point"), per_class=40)


def _paths(root: Path, models: str, technique: str) -> Paths:
    """The study's data with the techniques' folders under root/`models` (one study per folder)."""
    return Paths(
        prepared=root / "data/prepared",
        cache=root / "data/cache",
        features=root / "data/features",
        out=root / models / technique,
        models=root / models,
    )


def _train(root: Path, models: str, technique: str, *overrides: str) -> dict:
    return train_technique(
        config(f"technique={technique}", *overrides), _paths(root, models, technique), progress=False
    )


@pytest.fixture(scope="module")
def trained_head(study) -> dict:
    """feature-extract's head as the smoke preset trains it (root/kept): right on (nearly) every validation image."""
    return _train(study, "kept", "feature_extract")


@pytest.fixture(scope="module")
def weak_head(study) -> dict:
    """A head that learned almost nothing (root/helped)."""
    return _train(study, "helped", "feature_extract", *UNTRAINED_HEAD)


def _state(checkpoint: Path, prefix: str) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def test_fine_tuning_that_only_hurts_keeps_the_starting_weights(study, trained_head, caplog):
    with caplog.at_level(logging.INFO, logger="smallvision.training"):
        metrics = _train(study, "kept", "fine_tune", WRECKING_LR)
    out = study / "kept" / "fine_tune"
    history = read_history(out / "history.csv")
    assert [row["epoch"] for row in history] == [0, 1]
    assert (out / "history.csv").read_text().splitlines()[1].startswith("0,,,")  # no training values: empty cells
    start, trained = history
    assert np.isnan(start["train_loss"]) and np.isnan(start["train_acc"])  # validated before any update
    assert start["val_acc"] == pytest.approx(metrics["start_val_accuracy"], abs=1e-6)
    assert trained["val_acc"] < start["val_acc"]  # the wrecked epoch
    assert (metrics["best_epoch"], metrics["kept_start"], metrics["epochs_run"]) == (0, True, 1)
    assert metrics["best_val_accuracy"] == metrics["start_val_accuracy"]
    assert (
        f"fine_tune: training did not improve validation accuracy ({100 * start['val_acc']:.1f} % at the start, "
        f"best {100 * trained['val_acc']:.1f} % in epoch 1): keeping the starting weights"
    ) in caplog.messages

    # best.ckpt holds the head feature-extract trained, on the untouched pretrained base
    head = _state(study / "kept" / "feature_extract" / "best.ckpt", "net.")
    kept = _state(out / "best.ckpt", "net.head.")
    assert kept.keys() == head.keys() and all(torch.equal(kept[k], head[k]) for k in head)
    # ... so it makes feature-extract's predictions on the test split, and the paired step is exactly zero
    before, after = (
        read_predictions(study / "kept" / t / "test_predictions.csv") for t in ("feature_extract", out.name)
    )
    assert [(r.path, r.predicted) for r in after] == [(r.path, r.predicted) for r in before]
    assert [r.probability for r in after] == pytest.approx([r.probability for r in before], abs=1e-2)
    rows = evidence.study_comparison(study / "kept", None).rows
    step = rows[-1]
    assert (step["technique"], step["step_from"], step["kept_start"]) == ("fine_tune", "feature_extract", True)
    assert (step["step_gained"], step["step_lost"], step["step_difference"]) == (0, 0, 0.0)

    # the comparison says why
    table = comparison.comparison_table(rows, {})
    assert table[-1]["kept_start"] is True and table[-1]["best_epoch"] == 0
    note = (
        f"fine_tune kept the weights it started from: no training epoch beat their validation accuracy "
        f"({100 * metrics['start_val_accuracy']:.1f} %), so it was tested with them and its step from "
        "feature_extract compares a network with itself."
    )
    assert comparison.kept_start_notes(table) == [note]
    assert note in comparison.comparison_markdown(table, "Chollet").splitlines()
    assert f"<p>{html.escape(note)}</p>" in sections._comparison_html(table, "Chollet")  # the report's table
    report = sections.Report(
        visualize=config(
            "visualize.finetuning.before=feature_extract",
            "visualize.finetuning.after=fine_tune",
            "visualize.finetuning.images=4",
        ).visualize,
        **{key: [] for key in ("augmentation", "image_sizes", "records", "classes", "trained", "notes")},
        own_augmentations={},
        folder=study / "reports",
        load=None,
        nets=None,
        rows=rows,
    )
    assert "fine_tune kept the weights it started from" in finetuning_section(report).notes[0]
    fig = comparison.comparison_figure(table, "Chollet", chance=0.5)
    steps = [t.get_text() for t in fig.axes[0].texts if t.get_gid() == "step"]
    assert steps == ["+0.0 pts\np = 1.000\nkept its start"]


def test_a_tie_keeps_the_starting_weights(study, trained_head):
    """The start is right on every validation image, so no epoch can beat it, and an equal one does not."""
    metrics = _train(study, "kept", "fine_tune", "techniques.fine_tune.epochs=1")
    history = read_history(study / "kept" / "fine_tune" / "history.csv")
    assert [row["val_acc"] for row in history] == [1.0, 1.0]
    assert (metrics["best_epoch"], metrics["kept_start"]) == (0, True)
    head = _state(study / "kept" / "feature_extract" / "best.ckpt", "net.")
    kept = _state(study / "kept" / "fine_tune" / "best.ckpt", "net.head.")
    assert all(torch.equal(kept[k], head[k]) for k in head)


def test_fine_tuning_that_helps_keeps_its_best_epoch(study, weak_head, monkeypatch, tmp_path):
    weights = Weights()
    add_callbacks(monkeypatch, weights)
    uri = f"sqlite:///{tmp_path.as_posix()}/mlflow.db"
    tracker = StudyTracker(uri, "starting-point", study_key="s", study_name="s", tags={})
    cfg = config("technique=fine_tune", *UNTRAINED_HEAD, HELPFUL_LR, "techniques.fine_tune.epochs=2")
    with tracker.technique_run("fine_tune", {}, {}) as run_id:
        logger = lightning_logger(tracker, run_id)
        metrics = train_technique(cfg, _paths(study, "helped", "fine_tune"), logger=logger, progress=False)
    history = read_history(study / "helped" / "fine_tune" / "history.csv")
    assert [row["epoch"] for row in history] == [0, 1, 2]
    assert history[0]["val_acc"] == pytest.approx(weak_head["best_val_accuracy"], abs=0.05)  # the head it starts from
    assert metrics["kept_start"] is False and metrics["best_epoch"] >= 1
    assert metrics["best_val_accuracy"] >= metrics["start_val_accuracy"] + 0.2  # clearly better: not a coin flip
    assert metrics["best_val_accuracy"] == history[metrics["best_epoch"]]["val_acc"]
    assert metrics["epochs_run"] == 2
    # MLflow has the start's validation metrics at step 0, and no training metrics there (none were measured)
    client = MlflowClient(uri)
    val = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "val_acc"))
    assert len(val) == 3 and val[0] == (0, pytest.approx(metrics["start_val_accuracy"]))
    assert [m.step for m in client.get_metric_history(run_id, "val_loss")].count(0) == 1
    assert len(client.get_metric_history(run_id, "train_loss")) == 2
    assert all(m.step > 0 for m in client.get_metric_history(run_id, "train_loss"))
    # the start's weights are what training started from (the epoch-0 evaluation changed nothing)
    head = _state(study / "helped" / "feature_extract" / "best.ckpt", "net.")
    assert all(torch.equal(weights.start[f"head.{k}"], v) for k, v in head.items())


def test_the_start_evaluation_changes_nothing_in_training(study, weak_head, monkeypatch):
    """Validating the start draws from the global random state (a loader's base seed); it is restored, so a seeded
    run trains exactly as it would without the epoch-0 evaluation: the same epoch-1 metrics and weights."""
    overrides = (*UNTRAINED_HEAD, HELPFUL_LR, "techniques.fine_tune.epochs=1")

    def run(name: str) -> tuple[dict, dict]:
        weights = Weights()
        with monkeypatch.context() as patch:
            add_callbacks(patch, weights)
            paths = _paths(study, "helped", name)  # starts from helped/feature_extract's head
            train_technique(config("technique=fine_tune", *overrides), paths, progress=False)
        return read_history(paths.out / "history.csv")[-1], weights.end

    with_start = run("with_start")
    monkeypatch.setattr(starting_point.StartingPoint, "validate", lambda *args: None)
    without = run("without_start")
    assert with_start[0]["epoch"] == without[0]["epoch"] == 1
    assert with_start[0] == without[0]
    assert with_start[1].keys() == without[1].keys()
    assert all(torch.equal(with_start[1][k], without[1][k]) for k in without[1])


def test_techniques_that_start_from_random_weights_have_no_epoch_zero(study, weak_head):
    metrics = weak_head  # the head on cached features starts from random weights
    assert "kept_start" not in metrics and "start_val_accuracy" not in metrics
    history = read_history(study / "helped" / "feature_extract" / "history.csv")
    assert [row["epoch"] for row in history] == [1]
    assert metrics["best_epoch"] == 1 and metrics["epochs_run"] == 1


def test_the_best_row_is_the_earliest_of_equal_ones_so_a_tie_keeps_the_start():
    history = [{"epoch": 0, "val_acc": 0.9}, {"epoch": 1, "val_acc": 0.8}, {"epoch": 2, "val_acc": 0.9}]
    assert starting_point.best_row(history)["epoch"] == 0
    assert starting_point.best_row(history[1:])["epoch"] == 2
    assert [row["epoch"] for row in starting_point.trained_rows(history)] == [1, 2]

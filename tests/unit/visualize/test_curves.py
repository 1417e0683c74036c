"""The training curves figure (smallvision.visualize.curves)."""

from __future__ import annotations

import numpy as np
from helpers.figures import (
    draw_figure,
    image_panels,
    timed_build,
)

from smallvision.runs import HISTORY_COLUMNS
from smallvision.visualize import curves

SMOOTHED = {
    "train_acc": [0.5, 0.55, 0.625, 0.7125, 0.80625, 0.878125],
    "val_acc": [0.5, 0.54, 0.6, 0.65, 0.665, 0.6675],
    "train_loss": [0.7, 0.65, 0.575, 0.4875, 0.39375, 0.296875],
    "val_loss": [0.7, 0.675, 0.6375, 0.61875, 0.619375, 0.6396875],
}


def test_curves_figure_has_accuracy_and_loss_with_both_splits_and_the_best_epoch():
    history = {
        "epoch": np.arange(1, 7, dtype=float),
        "train_acc": np.array([0.5, 0.6, 0.7, 0.8, 0.9, 0.95]),
        "val_acc": np.array([0.5, 0.58, 0.66, 0.7, 0.68, 0.67]),
        "train_loss": np.array([0.7, 0.6, 0.5, 0.4, 0.3, 0.2]),
        "val_loss": np.array([0.7, 0.65, 0.6, 0.6, 0.62, 0.66]),
    }
    fig, pixels = timed_build("curves_figure", lambda: curves.curves_figure(history, "baseline", smoothing=0.5))
    assert fig.get_suptitle() == "baseline: training and validation (smoothed, factor 0.5)"
    assert not image_panels(fig)
    acc, loss = fig.axes
    assert (acc.get_title(), loss.get_title()) == ("accuracy", "loss")
    assert (acc.get_xlabel(), loss.get_ylabel()) == ("epoch", "loss")
    for ax, metric in ((acc, "acc"), (loss, "loss")):
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend[:2] == ["training", "validation"]
        smoothed = [line for line in ax.lines if line.get_label() in ("training", "validation")]
        for line, split in zip(smoothed, ("train", "val")):
            y = np.asarray(line.get_ydata(), dtype=float)
            assert np.allclose(y, SMOOTHED[f"{split}_{metric}"]), (split, metric, y)
        assert len(ax.lines) == 4 + (metric == "acc")  # raw points + smoothed line per split, the best-epoch star
    star = acc.lines[-1]
    assert star.get_label() == "best val 0.700" and list(star.get_xdata()) == [4.0]
    assert pixels.std() > 10


def test_curves_figure_of_a_single_epoch_draws_points():
    one = {c: np.array([v]) for c, v in zip(HISTORY_COLUMNS, (1.0, 0.7, 0.5, 0.69, 0.52))}
    fig = curves.curves_figure(one, "fine_tune")
    draw_figure(fig)
    acc, _ = fig.axes
    assert acc.lines[0].get_marker() == "o" and acc.lines[0].get_linestyle() == "None"


def test_curves_figure_shows_the_starting_weights_at_epoch_zero():
    """fine-tune's history.csv starts with epoch 0: its starting weights, validated before training (no training
    values); the start is marked, and a tie for the best validation accuracy marks the start (the kept model)."""
    history = {
        "epoch": np.array([0.0, 1.0, 2.0]),
        "train_acc": np.array([np.nan, 0.9, 0.95]),
        "val_acc": np.array([0.96, 0.94, 0.96]),
        "train_loss": np.array([np.nan, 0.3, 0.2]),
        "val_loss": np.array([0.1, 0.15, 0.12]),
    }
    fig = curves.curves_figure(history, "fine_tune")
    draw_figure(fig)
    acc, loss = fig.axes
    for ax, value in ((acc, 0.96), (loss, 0.1)):
        (start,) = [line for line in ax.lines if line.get_label() == "start (before training)"]
        assert (list(start.get_xdata()), list(start.get_ydata())) == ([0], [value])
        validation = next(line for line in ax.lines if line.get_label() == "validation")
        assert list(validation.get_xdata()) == [0.0, 1.0, 2.0]
    star = acc.lines[-1]
    assert star.get_label() == "best val 0.960" and list(star.get_xdata()) == [0.0]

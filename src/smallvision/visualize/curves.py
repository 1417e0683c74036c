"""Training curves: train vs validation accuracy and loss per epoch (the book's overfitting picture)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from smallvision.runs import HISTORY_COLUMNS
from smallvision.visualize.plotting import new_figure


def history_columns(rows: list[dict[str, float]]) -> dict[str, np.ndarray]:
    """`runs.read_history`'s rows (in epoch order) as one array per column."""
    return {c: np.array([row[c] for row in rows], dtype=float) for c in HISTORY_COLUMNS}


def smooth(values: np.ndarray, factor: float) -> np.ndarray:
    """Exponential moving average (the book's smooth_curve): s_t = factor * s_(t-1) + (1 - factor) * v_t.

    factor 0 returns the values; NaNs are skipped (they keep the previous smoothed value out of the mean).
    """
    if not 0 <= factor < 1:
        raise ValueError(f"smoothing factor must be in [0, 1), got {factor}")
    out = np.array(values, dtype=float)
    previous = np.nan
    for i, v in enumerate(out):
        if np.isnan(v):
            continue
        previous = v if np.isnan(previous) else factor * previous + (1 - factor) * v
        out[i] = previous
    return out


def curves_figure(history: dict[str, np.ndarray], technique: str, smoothing: float = 0.0) -> Figure:
    """Two axes, "accuracy" and "loss", each with the training and validation curves.

    With smoothing > 0 the raw values stay as faint points behind the smoothed lines. The best
    validation accuracy is marked, and so is epoch 0 when there is one: the starting weights of a technique that
    starts from trained ones, validated before training (no training values).
    """
    epochs = history["epoch"]
    fig = new_figure(11, 4)
    fig.suptitle(
        f"{technique}: training and validation" + (f" (smoothed, factor {smoothing:g})" if smoothing else ""),
        fontsize=13,
    )
    axes = fig.subplots(1, 2)
    for ax, metric, label in ((axes[0], "acc", "accuracy"), (axes[1], "loss", "loss")):
        for split, colour, name in (("train", "tab:blue", "training"), ("val", "tab:orange", "validation")):
            values = history[f"{split}_{metric}"]
            if np.all(np.isnan(values)):
                continue
            if smoothing:
                ax.plot(epochs, values, "o", color=colour, alpha=0.25, markersize=3)
            ax.plot(epochs, smooth(values, smoothing), "-" if len(epochs) > 1 else "o", color=colour, label=name)
        ax.set_title(f"{label}", fontsize=11)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    val = history["val_acc"]
    if len(epochs) and epochs[0] == 0:  # the starting weights, validated before training (smallvision.starting_point)
        for ax, metric in ((axes[0], "acc"), (axes[1], "loss")):
            ax.plot(0, history[f"val_{metric}"][0], "s", color="tab:green", label="start (before training)")
            ax.legend(fontsize=9)
    if not np.all(np.isnan(val)):
        best = int(np.nanargmax(val))
        axes[0].plot(epochs[best], val[best], "*", color="tab:red", markersize=12, label=f"best val {val[best]:.3f}")
        axes[0].legend(fontsize=9)
    return fig

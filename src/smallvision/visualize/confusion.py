"""Confusion matrices as figures: per technique, the test counts and the rates per true class, side by side."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from smallvision.runs import Confusion
from smallvision.visualize.plotting import new_figure, wrapped


def rates(matrix: np.ndarray) -> np.ndarray:
    """Each row (a true class) divided by its total: the share of that class predicted as each class (a class
    without test images is a row of zeros)."""
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)


def confusion_figure(confusion: Confusion, technique: str, cell: float = 0.9) -> Figure:
    """Two heatmaps, counts and rates, each cell labelled with its value; rows: true class, columns: predicted.
    The title gives the accuracy on the test images."""
    counts = np.asarray(confusion.matrix, dtype=np.int64)
    shares = rates(counts)
    n = len(confusion.classes)
    correct, total = int(np.trace(counts)), int(counts.sum())
    side = max(2.6, cell * n + 1.4)
    fig = new_figure(2 * side + 0.6, side + 0.9)
    accuracy = f"{correct} of {total} test images right ({100 * correct / total:.1f} %)" if total else "no test images"
    fig.suptitle(wrapped(f"Confusion matrix of {technique}: {accuracy}", 2 * side + 0.6, 12), fontsize=12)
    fontsize = 10 if n <= 6 else 7
    for ax, values, label, fmt in (
        (fig.add_subplot(1, 2, 1), counts, "counts", "{:d}"),
        (fig.add_subplot(1, 2, 2), shares, "rate per true class", "{:.1%}"),
    ):
        high = float(values.max()) if values.size else 1.0
        ax.imshow(values, cmap="Blues", vmin=0, vmax=high if high > 0 else 1.0)
        for (i, j), v in np.ndenumerate(values):
            dark = high > 0 and v > 0.6 * high
            ax.text(
                j, i, fmt.format(v), ha="center", va="center", fontsize=fontsize, color="white" if dark else "black"
            )
        ax.set_xticks(range(n), confusion.classes, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
        ax.set_yticks(range(n), confusion.classes)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(label, fontsize=11)
    return fig

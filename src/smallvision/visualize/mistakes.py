"""Mistakes: a gallery of the test images a technique gets wrong, most confident mistakes first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from smallvision.runs import PredictionRow
from smallvision.visualize.plotting import blank_axes, grid_shape, new_figure, show_image, wrapped


def most_confident_mistakes(predictions: list[PredictionRow], limit: int) -> list[PredictionRow]:
    """The wrong predictions, the most confident first (ties by path, so the choice is stable)."""
    wrong = [p for p in predictions if not p.correct]
    return sorted(wrong, key=lambda p: (-p.probability, p.path))[:limit]


def mistakes_figure(
    images: list[np.ndarray],
    mistakes: list[PredictionRow],
    technique: str,
    wrong_total: int,
    test_total: int,
    columns: int,
    panel: float = 1.9,
) -> Figure:
    """One panel per mistake: true class -> predicted class and its probability, the file name below."""
    count = max(1, len(mistakes))
    rows, cols = grid_shape(count, columns)
    fig = new_figure(panel * cols + 0.4, panel * 1.25 * rows + 0.8)
    shown = f", the {len(mistakes)} most confident shown" if len(mistakes) < wrong_total else ""
    fig.suptitle(
        wrapped(
            f"Mistakes of {technique}: {wrong_total} of {test_total} test images wrong{shown}", panel * cols + 0.4, 12
        ),
        fontsize=12,
    )
    axes = fig.subplots(rows, cols, squeeze=False).flat
    for k, ax in enumerate(axes):
        if k >= len(mistakes):
            blank_axes(ax, "no mistakes on the test split" if not mistakes and k == 0 else "")
            continue
        m = mistakes[k]
        show_image(ax, images[k], f"{m.actual} -> {m.predicted} {m.probability:.2f}", fontsize=9, color="firebrick")
        ax.set_xlabel(Path(m.path).name, fontsize=7)
    return fig

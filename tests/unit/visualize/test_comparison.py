"""The comparison figure (smallvision.visualize.comparison): a bar per technique with its interval and the book's
mark."""

from __future__ import annotations

import numpy as np
from helpers.figures import (
    timed_build,
)
from matplotlib.container import BarContainer

from smallvision.visualize import comparison


def test_comparison_figure_has_one_bar_per_technique_with_its_interval_and_the_books_marks():
    rows = [
        {
            "technique": "baseline",
            "backbone": "small_convnet",
            "test_accuracy": 0.693,
            "ci95_low": 0.663,
            "ci95_high": 0.721,
            "test_images": 996,
        },
        {
            "technique": "augment",
            "backbone": "small_convnet",
            "test_accuracy": 0.672,
            "ci95_low": 0.642,
            "ci95_high": 0.700,
            "test_images": 996,
        },
        {
            "technique": "feature_extract",
            "backbone": "efficientnet_lite0",
            "test_accuracy": 0.982,
            "ci95_low": 0.972,
            "ci95_high": 0.989,
            "test_images": 996,
        },
        {
            "technique": "my_own",
            "backbone": "resnet50",
            "test_accuracy": 0.95,
            "ci95_low": 0.93,
            "ci95_high": 0.965,
            "test_images": 996,
        },
    ]
    table = comparison.comparison_table(rows, {"baseline": 0.71, "augment": 0.82, "feature_extract": 0.90})
    fig, pixels = timed_build("comparison_figure", lambda: comparison.comparison_figure(table, "Chollet", chance=0.5))
    (ax,) = fig.axes
    assert ax.get_title() == "Test accuracy per technique" and ax.get_ylabel() == "test accuracy"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["baseline", "augment", "feature_extract", "my_own"]
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert np.allclose([b.get_height() for b in bars], [0.693, 0.672, 0.982, 0.95])
    assert [t.get_text() for t in ax.texts] == ["69.3 %", "67.2 %", "98.2 %", "95.0 %"]
    (marks,) = (
        ax.collections[-1:] if len(ax.collections) == 1 else [c for c in ax.collections if c.get_label() == "Chollet"]
    )
    assert np.allclose(marks.get_offsets(), [[0, 0.71], [1, 0.82], [2, 0.90]])  # no mark for my_own
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"test accuracy (95 % interval)", "Chollet", "chance (50 %)"} <= set(legend)
    assert ax.get_ylim()[0] <= 0.5 and ax.get_ylim()[1] > 0.989
    assert pixels.std() > 10

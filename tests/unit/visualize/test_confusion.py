"""Confusion matrices (smallvision.visualize.confusion): read back from confusion.json, drawn with counts and rates."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.figures import (
    assert_not_blank,
    draw_figure,
    flat_text,
    image_panels,
)

from smallvision.errors import DataError
from smallvision.runs import CONFUSION, Confusion, read_confusion
from smallvision.visualize import (
    confusion,
)

# --------------------------------------------------------------------------- confusion matrices


def test_confusion_json_is_read_back_and_a_malformed_one_names_the_fix(tmp_path):
    path = tmp_path / CONFUSION
    path.write_text(json.dumps({"classes": ["cat", "dog"], "matrix": [[40, 10], [5, 45]]}))
    assert read_confusion(path) == Confusion(["cat", "dog"], [[40, 10], [5, 45]])
    for bad in (
        {"classes": ["cat", "dog"], "matrix": [[1, 2]]},
        {"classes": ["cat", "dog"], "matrix": [[1, -2], [0, 1]]},
        [1],
    ):
        path.write_text(json.dumps(bad))
        with pytest.raises(DataError, match="rerun that technique's training stage"):
            read_confusion(path)


def test_confusion_figure_shows_counts_and_rates_per_true_class():
    fig = confusion.confusion_figure(Confusion(["cat", "dog"], [[40, 10], [5, 45]]), "augment")
    pixels = draw_figure(fig)
    assert flat_text(fig.get_suptitle()) == "Confusion matrix of augment: 85 of 100 test images right (85.0 %)"
    counts, shares = image_panels(fig)
    assert (counts.get_title(), shares.get_title()) == ("counts", "rate per true class")
    assert [t.get_text() for t in counts.texts] == ["40", "10", "5", "45"]
    assert [t.get_text() for t in shares.texts] == ["80.0%", "20.0%", "10.0%", "90.0%"]
    for ax in (counts, shares):
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
        assert [t.get_text() for t in ax.get_yticklabels()] == ["cat", "dog"]
        assert_not_blank(pixels, ax)
    assert np.allclose(confusion.rates(np.array([[0, 0], [1, 3]])), [[0, 0], [0.25, 0.75]])

"""The learning-rate finder's files in a technique's folder, its curve, and the report's section that shows it
(the finder itself, training a network: tests/unit/test_lr_find.py)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from helpers.figures import draw_figure

from smallvision.errors import DataError
from smallvision.visualize.lr_finder import (
    LR_FIND_JSON,
    LR_FIND_PNG,
    lr_find_figure,
    lr_find_section,
    read_lr_find,
    write_lr_find,
)
from smallvision.visualize.plotting import save
from smallvision.visualize.sections import Technique

LRS = np.geomspace(1e-6, 1e-1, 12).tolist()
RESULT = {
    "lr": LRS,
    "loss": [0.7 - 0.04 * i for i in range(10)] + [1.5, float("nan")],  # the loss falls, then explodes
    "suggestion": LRS[4],
    "configured_lr": 1e-4,
    "technique": "baseline",
    "optimizer": "rmsprop",
}


def test_the_result_is_read_back_as_written_with_its_curve(tmp_path):
    folder = tmp_path / "models" / "baseline"
    assert read_lr_find(folder) is None  # the finder has not been run for it
    written = write_lr_find(folder, RESULT, 40)
    assert written == (folder / LR_FIND_JSON, folder / LR_FIND_PNG)
    assert json.dumps(read_lr_find(folder)) == json.dumps(RESULT)
    assert (folder / LR_FIND_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("text", "message"), [("{not json", "is not valid JSON"), ('{"lr": []}', "lacks lr, loss")])
def test_a_damaged_result_is_a_clear_error(tmp_path, text, message):
    (tmp_path / LR_FIND_JSON).write_text(text)
    with pytest.raises(DataError, match=rf"{message}.*rerun python pipelines/lr_find.py"):
        read_lr_find(tmp_path)


def test_the_curve_marks_the_suggested_and_the_configured_rate():
    fig = lr_find_figure(RESULT)
    draw_figure(fig)
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["training loss (smoothed)", f"suggested {LRS[4]:.2g}", "configured 0.0001"]
    assert ax.get_xscale() == "log" and ax.get_ylim()[1] < 1.5  # the explosion is cut off


def test_the_section_shows_each_technique_that_has_a_result_and_says_when_none_has(tmp_path):
    write_lr_find(tmp_path / "baseline", RESULT, 40)
    report = SimpleNamespace(
        trained=[Technique("baseline", tmp_path / "baseline"), Technique("augment", tmp_path / "augment")],
        save=lambda fig, name, technique=None: save(fig, tmp_path / name, 40),
    )
    (figure,) = lr_find_section(report).figures
    assert figure.path == tmp_path / "lr_find_baseline.png" and figure.path.is_file()
    assert figure.caption == f"baseline: suggested {LRS[4]:.2g}, configured 0.0001."
    report.trained = report.trained[1:]
    section = lr_find_section(report)
    assert not section.figures and "python pipelines/lr_find.py technique=<t>" in section.notes[0]

"""A seed sweep's comparison: the table and the figure."""

from __future__ import annotations

import json

import pytest
from helpers.fake_runs import BOOK, SEED_ROWS

from smallvision.errors import DataError


def test_seed_comparison_table_gives_mean_std_min_max_and_the_book_per_technique(tmp_path):
    from smallvision.visualize.seed_comparison import seed_comparison_table, write_seed_comparison

    baseline, augment = seed_comparison_table(SEED_ROWS, BOOK)
    assert (baseline["technique"], augment["technique"]) == ("baseline", "augment")
    assert baseline["test_accuracy_mean"] == pytest.approx(0.66) and baseline["test_accuracy_std"] == pytest.approx(
        0.04
    )
    assert augment["test_accuracy_mean"] == pytest.approx(0.82) and augment["test_accuracy_std"] == pytest.approx(0.02)
    assert (baseline["test_accuracy_min"], baseline["test_accuracy_max"]) == (0.62, 0.70)
    assert (baseline["reference"], augment["reference"]) == (0.71, 0.82)
    assert baseline["test_accuracy_values"] == [0.70, 0.62, 0.66]

    json_path, md_path, png_path, html_path = write_seed_comparison(SEED_ROWS, BOOK, "the book", tmp_path)
    assert [p.name for p in (json_path, md_path, png_path, html_path)] == [
        "seed_comparison.json",
        "seed_comparison.md",
        "seed_comparison.png",
        "seed_comparison.html",
    ]
    assert "data:image/png;base64," in html_path.read_text()  # the sweep's report page, figure embedded
    saved = json.loads(json_path.read_text())
    assert saved["reference_label"] == "the book" and saved["rows"][0]["test_accuracy_std"] == pytest.approx(0.04)
    lines = md_path.read_text().splitlines()
    assert lines[0] == "| technique | seeds | mean | std | min | max | the book |"
    assert lines[2] == "| baseline | 3 (0, 1, 2) | 66.0 % | 4.0 % | 62.0 % | 70.0 % | 71.0 % |"
    assert lines[3] == "| augment | 3 (0, 1, 2) | 82.0 % | 2.0 % | 80.0 % | 84.0 % | 82.0 % |"
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind

    with pytest.raises(DataError, match="two runs with seed 0"):  # a learning-rate sweep is not averaged
        seed_comparison_table([*SEED_ROWS, {"technique": "baseline", "seed": 0, "test_accuracy": 0.5}], BOOK)


def test_seed_comparison_figure_draws_a_bar_per_technique_and_a_dot_per_seed():
    from matplotlib.container import BarContainer

    from smallvision.visualize.seed_comparison import seed_comparison_figure, seed_comparison_table

    rows = [*SEED_ROWS, {"technique": "fine_tune", "seed": 0, "test_accuracy": 0.97}]
    table = seed_comparison_table(rows, {**BOOK, "augment": None})
    ax = seed_comparison_figure(table, "the book").axes[0]
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [b.get_height() for b in bars] == pytest.approx([0.66, 0.82, 0.97])  # the means
    (dots,) = [c for c in ax.collections if c.get_gid() == "seeds"]
    offsets = dots.get_offsets()
    assert len(offsets) == 7  # one dot per seed
    assert sorted(map(float, offsets[:, 1])) == pytest.approx(sorted(r["test_accuracy"] for r in rows))
    assert [round(float(x)) for x in offsets[:, 0]] == [0, 0, 0, 1, 1, 1, 2]  # each on its technique's bar
    (marks,) = [c for c in ax.collections if c.get_label() == "the book"]
    assert marks.get_offsets().ravel().tolist() == pytest.approx([0, 0.71, 2, 0.97])  # no mark without a number
    assert ax.get_title() == "Test accuracy per technique, mean over 1–3 seeds"
    assert ax.get_ylim()[0] <= 0.62  # every dot is on the chart
    assert "each seed" in [t.get_text() for t in ax.get_legend().get_texts()]

"""A seed sweep's comparison (`python pipelines/train.py -m ... seed=0,1,2`): per technique the mean and spread of
the test accuracy across seeds, each seed as a point, each seed's paired test of each technique against the one
before it and the mean step over seeds with its interval; files and the sweep's report page."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from smallvision.errors import DataError
from smallvision.evidence import SeedSteps
from smallvision.files import atomic_write, atomic_write_text
from smallvision.runs import aggregate_seeds, is_number
from smallvision.visualize.comparison import (
    annotate_steps,
    comparison_figure,
    interval_points,
    legend_below,
    markdown_table,
    p_text,
    pct,
    points,
)
from smallvision.visualize.report import FigureEntry, Section, table_html, write_index

SEED_COMPARISON_FILES = ("seed_comparison.json", "seed_comparison.md", "seed_comparison.png", "seed_comparison.html")
STEP_HEADERS = ("step", "seeds", "mean difference", "95 % interval over seeds", "McNemar p per seed")
PER_SEED_HEADERS = ("seed", "step", "gained / lost", "difference (95 % interval)", "McNemar p")


def seed_comparison_table(
    rows: list[Mapping[str, Any]],
    reference: Mapping[str, float],
    metric: str = "test_accuracy",
    steps: SeedSteps | None = None,
) -> list[dict[str, Any]]:
    """One row per technique: `aggregate_seeds` of its jobs' metrics rows (n_seeds, seeds, <metric>_mean/_std/
    _min/_max/_values), its mean step from the technique before it (`steps.summary`, when given) and the book's
    accuracy as `reference` (or None). Raises DataError as aggregate_seeds does, and when there are no rows."""
    rows = list(rows)
    if not rows:
        raise DataError("no finished job (metrics.json) to compare: run the sweep first")
    summary = steps.summary if steps else {}
    return [
        {**row, **summary.get(row["technique"], {}), "reference": reference.get(row["technique"])}
        for row in aggregate_seeds(rows, metric)
    ]


def _seeds_phrase(table: list[Mapping[str, Any]]) -> str:
    counts = sorted({int(row["n_seeds"]) for row in table})
    if len(counts) == 1:
        return f"{counts[0]} seed" + ("s" if counts[0] != 1 else "")
    return f"{counts[0]}–{counts[-1]} seeds"


def _seed_cells(table: list[Mapping[str, Any]], reference_label: str, metric: str) -> tuple[list[str], list[list[str]]]:
    headers = ["technique", "seeds", "mean", "std", "min", "max", reference_label]
    cells = []
    for row in table:
        seeds = f"{row['n_seeds']} ({', '.join(str(s) for s in row['seeds'])})"
        std = pct(row[f"{metric}_std"]) if row["n_seeds"] > 1 else "—"
        cells.append(
            [
                str(row["technique"]),
                seeds,
                pct(row[f"{metric}_mean"]),
                std,
                pct(row[f"{metric}_min"]),
                pct(row[f"{metric}_max"]),
                pct(row["reference"]),
            ]
        )
    return headers, cells


def _step_cells(table: list[Mapping[str, Any]]) -> list[list[str]]:
    return [
        [
            f"{row['step_from']} → {row['technique']}",
            str(row["step_seeds"]),
            points(row["step_difference_mean"]),
            interval_points(row["step_difference_ci95_low"], row["step_difference_ci95_high"]),
            ", ".join(p_text(p) for p in row["step_p_values"]),
        ]
        for row in table
        if row.get("step_seeds")
    ]


def _per_seed_cells(per_seed: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    cells = []
    for test in per_seed:
        step = f"{test['from']} → {test['to']}"
        if "note" in test:
            cells.append([str(test["seed"]), step, "—", "not paired", "—"])
            continue
        interval = interval_points(test["ci95_low"], test["ci95_high"])
        cells.append(
            [
                str(test["seed"]),
                step + (" (kept its start)" if test.get("kept_start") else ""),
                f"+{test['only_second']} / −{test['only_first']}",
                f"{points(test['difference'])} ({interval})",
                p_text(test["p_value"]),
            ]
        )
    return cells


SEED_TESTS_NOTE = (
    "Each seed trains every technique again on the same split; a step compares a technique with the one before it "
    "on the same test images, seed by seed (McNemar's exact test, Newcombe's paired 95 % interval), and over "
    "seeds as the mean difference with a Student t 95 % interval (n − 1 degrees of freedom)."
)


def seed_comparison_markdown(
    table: list[Mapping[str, Any]],
    reference_label: str,
    metric: str = "test_accuracy",
    per_seed: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The seed table in Markdown: technique | seeds | mean | std | min | max | reference (std "—" for one seed),
    then, when there are steps, the mean step per technique and each seed's paired test."""
    lines = markdown_table(*_seed_cells(table, reference_label, metric))
    steps = _step_cells(table)
    if steps or per_seed:
        lines += ["", SEED_TESTS_NOTE, ""] + markdown_table(STEP_HEADERS, steps)
        lines += ["", "Each seed's paired test:", ""] + markdown_table(PER_SEED_HEADERS, _per_seed_cells(per_seed))
    return "\n".join(lines) + "\n"


def seed_comparison_figure(
    table: list[Mapping[str, Any]], reference_label: str, metric: str = "test_accuracy", chance: float | None = None
) -> Figure:
    """`comparison_figure` for a seed sweep: per technique the mean as a bar, ± 1 std as its error bar, each seed's
    accuracy as a dot (min and max are the outer dots), the book's numbers as red marks, and between consecutive
    bars the mean step over seeds with its interval and the largest per-seed p-value."""
    mean = np.array([row[f"{metric}_mean"] for row in table], dtype=float)
    std = np.array([row[f"{metric}_std"] for row in table], dtype=float)
    bars = [
        {
            "technique": row["technique"],
            "test_accuracy": m,
            "ci95_low": m - s,
            "ci95_high": m + s,
            "reference": row.get("reference"),
        }
        for row, m, s in zip(table, mean, std)
    ]
    fig = comparison_figure(bars, reference_label, chance=chance)
    ax = fig.axes[0]
    for container in ax.containers:  # the bars: relabel "test accuracy (95 % interval)"
        if isinstance(container, BarContainer):
            container.set_label("mean (error bar: ± 1 std)")
    xs, ys = [], []
    for xi, row in enumerate(table):
        values = [float(v) for v in row[f"{metric}_values"]]
        xs += list(xi + (np.linspace(-0.2, 0.2, len(values)) if len(values) > 1 else np.zeros(1)))
        ys += values
    ax.scatter(
        xs, ys, s=28, color="tab:orange", edgecolors="black", linewidths=0.6, zorder=4, label="each seed", gid="seeds"
    )
    tops = [max(m + s, *row[f"{metric}_values"], row.get("reference") or 0.0) for row, m, s in zip(table, mean, std)]
    for text, xi, top in zip(ax.texts, range(len(table)), tops):  # the mean's label above the dots and the mark
        text.xy = (xi, top)
    lowest_dot = math.floor((min(ys) - 0.05) * 10) / 10
    ax.set_ylim(max(0.0, min(ax.get_ylim()[0], lowest_dot)), 1.05)
    steps = [
        (
            k,
            max(tops[k - 1], tops[k]),
            f"{points(row['step_difference_mean'])}"
            + (f" ({interval_points(lo, hi)})" if is_number(lo := row["step_difference_ci95_low"]) else "")
            + f"\nmax p {p_text(row['step_p_value_max'])}, {row['step_seeds']} seeds",
        )
        for k, row in enumerate(table)
        if k and row.get("step_seeds") and row.get("step_from") == table[k - 1]["technique"]
        for hi in [row["step_difference_ci95_high"]]
    ]
    annotate_steps(ax, steps)
    ax.set_title(f"Test accuracy per technique, mean over {_seeds_phrase(table)}", fontsize=13)
    legend_below(ax)
    return fig


def seed_comparison_html(
    table: list[Mapping[str, Any]], reference_label: str, metric: str, per_seed: Sequence[Mapping[str, Any]]
) -> str:
    """The seed report's tables: the spread per technique, the mean steps, each seed's paired test."""
    headers, cells = _seed_cells(table, reference_label, metric)
    html = table_html(headers, cells, numeric=frozenset(range(1, 7)))
    steps = _step_cells(table)
    if steps or per_seed:
        html += f"<p>{SEED_TESTS_NOTE}</p>" + table_html(list(STEP_HEADERS), steps, numeric=frozenset({1, 2, 3, 4}))
        html += "<p>Each seed's paired test:</p>"
        html += table_html(list(PER_SEED_HEADERS), _per_seed_cells(per_seed), numeric=frozenset({0, 2, 3, 4}))
    return html


def write_seed_comparison(
    rows: list[Mapping[str, Any]],
    reference: Mapping[str, float],
    reference_label: str,
    folder: Path,
    dpi: int = 100,
    metric: str = "test_accuracy",
    steps: SeedSteps | None = None,
) -> list[Path]:
    """seed_comparison.json (the rows and each seed's paired tests), .md, .png and .html (the sweep's report page)
    in `folder` from a seed sweep's metrics rows (one per job) and their steps (`evidence.seed_steps`).
    Raises DataError when the rows cannot be averaged over seeds (see `seed_comparison_table`)."""
    table = seed_comparison_table(rows, reference, metric, steps)
    per_seed = steps.per_seed if steps else []
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path, html_path = (folder / name for name in SEED_COMPARISON_FILES)
    payload = {"metric": metric, "reference_label": reference_label, "rows": table, "per_seed": per_seed}
    atomic_write_text(json_path, json.dumps(payload, indent=2) + "\n")  # atomic: parallel sweep jobs never clash
    atomic_write_text(md_path, seed_comparison_markdown(table, reference_label, metric, per_seed))
    fig = seed_comparison_figure(table, reference_label, metric)
    atomic_write(png_path, lambda p: fig.savefig(p, dpi=dpi))
    section = Section(
        "seeds",
        f"Test accuracy over {_seeds_phrase(table)}",
        f"Per technique the mean, std, min and max of the test accuracy over seeds; red marks: {reference_label}.",
        figures=[
            FigureEntry(
                png_path,
                "Mean over seeds (bars), ± 1 std (error bars), each seed (dots), the mean "
                "step between consecutive techniques with its interval over seeds.",
            )
        ],
        html=seed_comparison_html(table, reference_label, metric, per_seed),
    )
    write_index(html_path, [section], f"smallvision seed study: {folder.name}", f"Sweep folder {folder}.")
    return [json_path, md_path, png_path, html_path]

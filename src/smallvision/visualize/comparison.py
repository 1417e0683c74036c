"""The comparison: test accuracy per technique with its 95 % interval, against the book's numbers."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from smallvision.errors import DataError
from smallvision.files import atomic_write, atomic_write_text
from smallvision.runs import aggregate_seeds
from smallvision.visualize.plotting import new_figure

COLUMNS = ("technique", "backbone", "test_accuracy", "ci95_low", "ci95_high", "test_images", "reference", "wall_time_s")


def comparison_table(rows: list[Mapping[str, Any]], reference: Mapping[str, float]) -> list[dict[str, Any]]:
    """One row per trained technique (metrics.json contents) with the book's accuracy as `reference` (or None)."""
    return [
        {**{c: row.get(c) for c in COLUMNS if c != "reference"}, "reference": reference.get(row.get("technique"))}
        for row in rows
    ]


def _pct(value: Any) -> str:
    return f"{100 * value:.1f} %" if isinstance(value, (int, float)) and math.isfinite(value) else "—"


def comparison_markdown(table: list[Mapping[str, Any]], reference_label: str) -> str:
    """The table in Markdown (what README and the HTML page show)."""
    lines = [
        f"| technique | backbone | test accuracy | 95 % interval | test images | {reference_label} | training time |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in table:
        interval = f"{_pct(row['ci95_low'])} – {_pct(row['ci95_high'])}"
        time = f"{row['wall_time_s']:.0f} s" if isinstance(row.get("wall_time_s"), (int, float)) else "—"
        lines.append(
            f"| {row['technique']} | {row.get('backbone') or '—'} | {_pct(row['test_accuracy'])} | {interval} | "
            f"{row.get('test_images') or '—'} | {_pct(row['reference'])} | {time} |"
        )
    return "\n".join(lines) + "\n"


def write_comparison(table: list[Mapping[str, Any]], reference_label: str, folder: Path) -> tuple[Path, Path]:
    """comparison.json (the rows) and comparison.md in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / "comparison.json", folder / "comparison.md"
    json_path.write_text(
        json.dumps({"reference_label": reference_label, "rows": list(table)}, indent=2) + "\n", encoding="utf-8"
    )
    md_path.write_text(comparison_markdown(table, reference_label), encoding="utf-8")
    return json_path, md_path


def _legend_below(ax) -> None:
    """The legend under the x axis, where no bar, error bar or reference mark can be hidden behind it."""
    # markerscale: the reference marks are drawn bar-wide (s=1800), too wide for a legend entry
    ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, frameon=False, markerscale=0.3)


def comparison_figure(table: list[Mapping[str, Any]], reference_label: str, chance: float | None = None) -> Figure:
    """Bars of test accuracy with 95 % interval error bars, the book's numbers as red marks, chance as a line."""
    fig = new_figure(max(6.0, 1.9 * len(table) + 2.5), 4.8)
    ax = fig.subplots()
    names = [row["technique"] for row in table]
    acc = np.array([row["test_accuracy"] for row in table], dtype=float)
    low = np.array([row.get("ci95_low", np.nan) for row in table], dtype=float)
    high = np.array([row.get("ci95_high", np.nan) for row in table], dtype=float)
    err = np.vstack([np.nan_to_num(acc - low), np.nan_to_num(high - acc)])
    x = np.arange(len(table))
    ax.bar(x, acc, width=0.6, color="tab:blue", alpha=0.85, label="test accuracy (95 % interval)")
    ax.errorbar(x, acc, yerr=err, fmt="none", ecolor="black", capsize=6, linewidth=1.5)
    for xi, a, h in zip(x, acc, high):
        ax.annotate(
            f"{100 * a:.1f} %",
            (xi, np.nanmax([a, h])),
            textcoords="offset points",
            xytext=(0, 4),
            ha="center",
            fontsize=10,
        )
    refs = [(xi, row["reference"]) for xi, row in zip(x, table) if row.get("reference") is not None]
    if refs:
        rx, ry = zip(*refs)
        ax.scatter(rx, ry, marker="_", s=1800, linewidths=3, color="tab:red", zorder=3, label=reference_label)
    if chance is not None:
        ax.axhline(chance, color="0.5", linestyle="--", linewidth=1, label=f"chance ({100 * chance:.0f} %)")
    ax.set_xticks(x, names)
    floor = min([chance or 0.5] + [v for v in low if np.isfinite(v)] + list(ry if refs else []))
    ax.set_ylim(max(0.0, math.floor((floor - 0.05) * 10) / 10), 1.05)
    ax.set_ylabel("test accuracy")
    ax.set_title("Test accuracy per technique", fontsize=13)
    ax.yaxis.set_major_formatter(lambda v, _pos: f"{100 * v:.0f} %")
    ax.grid(axis="y", alpha=0.3)
    _legend_below(ax)
    return fig


# ---- a seed sweep: the mean and spread across seeds per technique (`python pipelines/train.py -m ... seed=0,1,2`)

SEED_COMPARISON_FILES = ("seed_comparison.json", "seed_comparison.md", "seed_comparison.png")


def seed_comparison_table(
    rows: list[Mapping[str, Any]], reference: Mapping[str, float], metric: str = "test_accuracy"
) -> list[dict[str, Any]]:
    """One row per technique: `aggregate_seeds` of its jobs' metrics rows (n_seeds, seeds, <metric>_mean/_std/
    _min/_max/_values) with the book's accuracy as `reference` (or None). Raises DataError as aggregate_seeds does,
    and when there are no rows at all."""
    rows = list(rows)
    if not rows:
        raise DataError("no finished job (metrics.json) to compare: run the sweep first")
    return [{**summary, "reference": reference.get(summary["technique"])} for summary in aggregate_seeds(rows, metric)]


def _seeds_phrase(table: list[Mapping[str, Any]]) -> str:
    counts = sorted({int(row["n_seeds"]) for row in table})
    if len(counts) == 1:
        return f"{counts[0]} seed" + ("s" if counts[0] != 1 else "")
    return f"{counts[0]}–{counts[-1]} seeds"


def seed_comparison_markdown(
    table: list[Mapping[str, Any]], reference_label: str, metric: str = "test_accuracy"
) -> str:
    """The seed table in Markdown: technique | seeds | mean | std | min | max | reference (std "—" for one seed)."""
    lines = [f"| technique | seeds | mean | std | min | max | {reference_label} |", "|---|---|---|---|---|---|---|"]
    for row in table:
        seeds = f"{row['n_seeds']} ({', '.join(str(s) for s in row['seeds'])})"
        std = _pct(row[f"{metric}_std"]) if row["n_seeds"] > 1 else "—"
        lines.append(
            f"| {row['technique']} | {seeds} | {_pct(row[f'{metric}_mean'])} | {std} | "
            f"{_pct(row[f'{metric}_min'])} | {_pct(row[f'{metric}_max'])} | {_pct(row['reference'])} |"
        )
    return "\n".join(lines) + "\n"


def seed_comparison_figure(
    table: list[Mapping[str, Any]], reference_label: str, metric: str = "test_accuracy", chance: float | None = None
) -> Figure:
    """`comparison_figure` for a seed sweep: per technique the mean as a bar, ± 1 std as its error bar, each seed's
    accuracy as a dot (min and max are the outer dots), the book's numbers as red marks."""
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
    ax.set_title(f"Test accuracy per technique, mean over {_seeds_phrase(table)}", fontsize=13)
    _legend_below(ax)
    return fig


def write_seed_comparison(
    rows: list[Mapping[str, Any]],
    reference: Mapping[str, float],
    reference_label: str,
    folder: Path,
    dpi: int = 100,
    metric: str = "test_accuracy",
) -> list[Path]:
    """seed_comparison.json (the rows), .md and .png in `folder` from a seed sweep's metrics rows (one per job).
    Raises DataError when the rows cannot be averaged over seeds (see `seed_comparison_table`)."""
    table = seed_comparison_table(rows, reference, metric)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path = (folder / name for name in SEED_COMPARISON_FILES)
    payload = json.dumps({"metric": metric, "reference_label": reference_label, "rows": table}, indent=2) + "\n"
    atomic_write_text(json_path, payload)  # atomic: parallel sweep jobs never leave a half-written file
    markdown = seed_comparison_markdown(table, reference_label, metric)
    atomic_write_text(md_path, markdown)
    fig = seed_comparison_figure(table, reference_label, metric)
    atomic_write(png_path, lambda p: fig.savefig(p, dpi=dpi))
    return [json_path, md_path, png_path]

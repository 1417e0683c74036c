"""A backbone sweep's comparison (`python pipelines/train.py -m technique=feature_extract,fine_tune
backbone=efficientnet_lite0,efficientnet_lite1,efficientnet_lite2 seed=0,1,2`): per backbone and technique the test
accuracy over the seeds with its interval, the time per epoch and the parameters, as a table and a chart.

The interval is the 95 % Wilson interval of the mean accuracy on the test images: every seed is scored on the same
images, so the test set's size, not the number of seeds, bounds what the accuracy says. Each seed is shown too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from smallvision.errors import DataError
from smallvision.files import atomic_write, atomic_write_text
from smallvision.runs import aggregate_seeds
from smallvision.stats import wilson_interval
from smallvision.visualize.plotting import new_figure

BACKBONE_COMPARISON_FILES = ("backbone_comparison.json", "backbone_comparison.md", "backbone_comparison.png")
_AVERAGED = ("test_images", "seconds_per_epoch", "epochs_run", "wall_time_s", "parameters", "trainable_parameters")
_COLOURS = {"feature_extract": "tab:blue", "fine_tune": "tab:green"}


def backbone_table(rows: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per backbone and technique, backbones by name: mean, min and max accuracy over the seeds, its
    interval, and the mean seconds per epoch, epochs, wall time and parameters of the jobs."""
    if not rows:
        raise DataError("no finished job (metrics.json) to compare: run the sweep first")
    table = []
    for row in aggregate_seeds(rows, by=("backbone", "technique"), also=_AVERAGED):
        n = row.get("test_images_mean")
        low, high = wilson_interval(round(row["test_accuracy_mean"] * n), int(n)) if n else (None, None)
        table.append({**row, "ci95_low": low, "ci95_high": high})
    return table


def _pct(value: Any) -> str:
    return f"{100 * value:.2f} %" if isinstance(value, (int, float)) else "—"


def _number(row: Mapping[str, Any], key: str, fmt: str) -> str:
    value = row.get(f"{key}_mean")
    return format(value, fmt) if isinstance(value, (int, float)) else "—"


def backbone_markdown(table: list[Mapping[str, Any]]) -> str:
    columns = (
        "backbone",
        "technique",
        "seeds",
        "test accuracy (mean)",
        "95 % interval",
        "seeds' min – max",
        "s / epoch",
        "epochs",
        "parameters",
        "trainable",
    )
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in table:
        millions = {k: row.get(f"{k}_mean") for k in ("parameters", "trainable_parameters")}
        lines.append(
            f"| {row['backbone']} | {row['technique']} | {row['n_seeds']} ({', '.join(map(str, row['seeds']))}) "
            f"| {_pct(row['test_accuracy_mean'])} | {_pct(row['ci95_low'])} – {_pct(row['ci95_high'])} "
            f"| {_pct(row['test_accuracy_min'])} – {_pct(row['test_accuracy_max'])} "
            f"| {_number(row, 'seconds_per_epoch', '.1f')} | {_number(row, 'epochs_run', '.0f')} | "
            + " | ".join(f"{v / 1e6:.2f} M" if isinstance(v, (int, float)) else "—" for v in millions.values())
            + " |"
        )
    return "\n".join(lines) + "\n"


def backbone_figure(table: list[Mapping[str, Any]]) -> Figure:
    """Three panels with the backbones along x and one bar per technique: test accuracy (interval as error bar,
    each seed as a dot), seconds per epoch, and parameters (the trainable share hatched)."""
    backbones = list(dict.fromkeys(row["backbone"] for row in table))
    techniques = list(dict.fromkeys(row["technique"] for row in table))
    fig = new_figure(max(11.0, 3.2 * len(backbones) + 5), 4.4)
    acc_ax, time_ax, param_ax = fig.subplots(1, 3)
    width = 0.8 / len(techniques)
    for k, technique in enumerate(techniques):
        colour = _COLOURS.get(technique, f"C{k + 2}")
        cells = {row["backbone"]: row for row in table if row["technique"] == technique}
        x = np.array([i for i, b in enumerate(backbones) if b in cells]) + (k - (len(techniques) - 1) / 2) * width
        rows = [cells[b] for b in backbones if b in cells]
        mean = np.array([r["test_accuracy_mean"] for r in rows])
        low = np.array([r["ci95_low"] if r["ci95_low"] is not None else m for r, m in zip(rows, mean)])
        high = np.array([r["ci95_high"] if r["ci95_high"] is not None else m for r, m in zip(rows, mean)])
        acc_ax.bar(x, mean, width, color=colour, alpha=0.85, label=technique)
        acc_ax.errorbar(x, mean, yerr=[mean - low, high - mean], fmt="none", ecolor="black", capsize=4)
        for xi, r in zip(x, rows):
            values = r["test_accuracy_values"]
            spread = np.linspace(-width / 4, width / 4, len(values)) if len(values) > 1 else np.zeros(1)
            acc_ax.scatter(xi + spread, values, s=14, color="white", edgecolors="black", zorder=4)
        seconds = time_ax.bar(x, [r.get("seconds_per_epoch_mean") or 0 for r in rows], width, color=colour)
        time_ax.bar_label(seconds, fmt="%.1f", fontsize=7)
        params = [(r.get("parameters_mean") or 0) / 1e6 for r in rows]
        trainable = [(r.get("trainable_parameters_mean") or 0) / 1e6 for r in rows]
        param_ax.bar(x, params, width, color=colour, alpha=0.5, label=f"{technique}: all")
        param_ax.bar(x, trainable, width, color=colour, hatch="//", edgecolor="black", label=f"{technique}: trained")
    lows = [r["ci95_low"] for r in table if r["ci95_low"] is not None] + [r["test_accuracy_min"] for r in table]
    acc_ax.set_ylim(max(0.0, min(lows) - 0.02), 1.0)
    acc_ax.yaxis.set_major_formatter(lambda v, _pos: f"{100 * v:.1f} %")
    for ax, title in (
        (acc_ax, "test accuracy (95 % interval; dots: seeds)"),
        (time_ax, "seconds per epoch"),
        (param_ax, "parameters (millions)"),
    ):
        ax.set_xticks(range(len(backbones)), backbones, rotation=15, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    acc_ax.legend(fontsize=8, loc="lower right")
    param_ax.legend(fontsize=7)
    seeds = sorted({int(row["n_seeds"]) for row in table})
    fig.suptitle(f"Backbone sweep ({'–'.join(map(str, seeds))} seeds each)", fontsize=12)
    return fig


def write_backbone_comparison(rows: list[Mapping[str, Any]], folder: Path, dpi: int = 100) -> list[Path]:
    """backbone_comparison.json (the table), .md and .png in `folder` from a backbone sweep's metrics rows."""
    table = backbone_table(rows)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path = (folder / name for name in BACKBONE_COMPARISON_FILES)
    atomic_write_text(json_path, json.dumps({"rows": table}, indent=2) + "\n")  # parallel jobs: never half-written
    atomic_write_text(md_path, backbone_markdown(table))
    fig = backbone_figure(table)
    atomic_write(png_path, lambda p: fig.savefig(p, dpi=dpi))
    return [json_path, md_path, png_path]

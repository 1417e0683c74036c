"""The comparison: test accuracy per technique with its 95 % interval, against the book's numbers."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from smallvision.visualize.plotting import new_figure

COLUMNS = ("technique", "backbone", "test_accuracy", "ci95_low", "ci95_high", "test_images", "reference",
           "wall_time_s")


def comparison_table(rows: list[Mapping[str, Any]], reference: Mapping[str, float]) -> list[dict[str, Any]]:
    """One row per trained technique (metrics.json contents) with the book's accuracy as `reference` (or None)."""
    return [{**{c: row.get(c) for c in COLUMNS if c != "reference"}, "reference": reference.get(row.get("technique"))}
            for row in rows]


def _pct(value: Any) -> str:
    return f"{100 * value:.1f} %" if isinstance(value, (int, float)) and math.isfinite(value) else "—"


def comparison_markdown(table: list[Mapping[str, Any]], reference_label: str) -> str:
    """The table in Markdown (what README and the HTML page show)."""
    lines = [f"| technique | backbone | test accuracy | 95 % interval | test images | {reference_label} | training time |",
             "|---|---|---|---|---|---|---|"]
    for row in table:
        interval = f"{_pct(row['ci95_low'])} – {_pct(row['ci95_high'])}"
        time = f"{row['wall_time_s']:.0f} s" if isinstance(row.get("wall_time_s"), (int, float)) else "—"
        lines.append(f"| {row['technique']} | {row.get('backbone') or '—'} | {_pct(row['test_accuracy'])} | {interval} | "
                     f"{row.get('test_images') or '—'} | {_pct(row['reference'])} | {time} |")
    return "\n".join(lines) + "\n"


def write_comparison(table: list[Mapping[str, Any]], reference_label: str, folder: Path) -> tuple[Path, Path]:
    """comparison.json (the rows) and comparison.md in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / "comparison.json", folder / "comparison.md"
    json_path.write_text(json.dumps({"reference_label": reference_label, "rows": list(table)}, indent=2) + "\n",
                         encoding="utf-8")
    md_path.write_text(comparison_markdown(table, reference_label), encoding="utf-8")
    return json_path, md_path


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
        ax.annotate(f"{100 * a:.1f} %", (xi, np.nanmax([a, h])), textcoords="offset points", xytext=(0, 4),
                    ha="center", fontsize=10)
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
    ax.legend(fontsize=9, loc="lower right")
    return fig

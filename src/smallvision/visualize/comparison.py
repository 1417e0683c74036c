"""The comparison: test accuracy per technique with its 95 % interval, each technique against the one before it
on the same test images (McNemar's exact p-value, the accuracy difference with its paired 95 % interval), where
each row came from, against the book's numbers; and the same over the seeds of a sweep."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.transforms import offset_copy

from smallvision.evidence import STEP_KEYS
from smallvision.files import atomic_write_text
from smallvision.provenance import FIELDS
from smallvision.runs import comparison_metrics, is_number
from smallvision.visualize.plotting import new_figure

COLUMNS = ("technique", "backbone", "test_accuracy", "ci95_low", "ci95_high", "test_images", "reference", "wall_time_s")
# a technique that starts from trained weights and kept them (`smallvision.starting_point`): why its step is zero
START_KEYS = ("kept_start", "start_val_accuracy", "best_epoch", "best_val_accuracy")
HEADERS = (
    "technique",
    "backbone",
    "test accuracy",
    "95 % interval",
    "test images",
    "step from",
    "gained / lost",
    "difference (95 % interval)",
    "McNemar p",
    "{reference}",
    "training time",
)
NUMERIC_CELLS = frozenset({2, 3, 4, 6, 7, 8, 9, 10})  # right-aligned in HTML
# the data audit's reading of each technique's test mistakes, where the audit has run (`visualize.audit_findings`):
# how many it lists as probable label errors, beside the accuracy, never replacing it
AUDIT_KEYS = ("test_mistakes", "test_mistakes_flagged")
AUDIT_HEADER = "test mistakes flagged as label errors (audit)"
PROVENANCE_HEADERS = ("technique", "preset", "seed", "data", "manifest", "git commit", "config", "trained at")


# ----------------------------------------------------------------------------------------------- formatting


def pct(value: Any) -> str:
    return f"{100 * value:.1f} %" if is_number(value) else "—"


def points(value: Any) -> str:
    return f"{100 * value:+.1f} pts" if is_number(value) else "—"


def p_text(p: Any) -> str:
    """A p-value as the tables and figures print it: 3 decimals, "< 0.001" below that."""
    if not is_number(p):
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def interval_points(low: Any, high: Any) -> str:
    return f"{100 * low:+.1f} to {100 * high:+.1f}" if is_number(low) and is_number(high) else "—"


def audited(table: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the table has the audit's column (a row carries its counts)."""
    return any(row.get(AUDIT_KEYS[1]) is not None for row in table)


def headers(table: Sequence[Mapping[str, Any]], reference_label: str) -> list[str]:
    """The table's column headings: HEADERS, then the audit's column where it has run."""
    return [h.format(reference=reference_label) for h in HEADERS] + ([AUDIT_HEADER] if audited(table) else [])


def table_cells(row: Mapping[str, Any], audit: bool = False) -> list[str]:
    """One comparison row's cells, in the order of `headers` (the Markdown file and the report's table); `audit`:
    with the audit's column."""
    step = row.get("step_from")
    if step and is_number(row.get("step_p_value")):
        gained_lost = f"+{row['step_gained']} / −{row['step_lost']}"
        difference = (
            f"{points(row['step_difference'])} ({interval_points(row['step_ci95_low'], row['step_ci95_high'])})"
        )
        p = p_text(row["step_p_value"])
    else:
        gained_lost, difference, p = "—", "not paired" if row.get("step_note") else "—", "—"
    time = row.get("wall_time_s")
    return [
        str(row["technique"]),
        str(row.get("backbone") or "—"),
        pct(row.get("test_accuracy")),
        f"{pct(row.get('ci95_low'))} – {pct(row.get('ci95_high'))}",
        str(row.get("test_images") or "—"),
        str(step or "—"),
        gained_lost,
        difference,
        p,
        pct(row.get("reference")),
        f"{time:.0f} s" if is_number(time) else "—",
    ] + ([_flagged_cell(row)] if audit else [])


def _flagged_cell(row: Mapping[str, Any]) -> str:
    mistakes, flagged = (row.get(k) for k in AUDIT_KEYS)
    return f"{flagged} of {mistakes}" if is_number(flagged) and is_number(mistakes) else "—"


def provenance_cells(row: Mapping[str, Any]) -> list[str]:
    """Where one row came from, in the order of PROVENANCE_HEADERS."""
    commit = row.get("git_commit")
    dataset, source = row.get("dataset"), row.get("data_source")
    data = f"{dataset} ({source})" if source not in (None, "", dataset) else dataset
    return [
        str(row["technique"]),
        str(row.get("preset") or "—"),
        str(row["seed"]) if row.get("seed") is not None else "—",
        str(data or "—"),
        str(row.get("manifest") or "—"),
        str(commit)[:10] if commit else "—",
        str(row.get("config_hash") or "—"),
        str(row.get("trained_at") or "—"),
    ]


def markdown_table(headers: Sequence[str], rows: list[list[str]]) -> list[str]:
    return [f"| {' | '.join(headers)} |", "|" + "---|" * len(headers)] + [f"| {' | '.join(r)} |" for r in rows]


# ----------------------------------------------------------------------------------------------- one study


def comparison_table(rows: list[Mapping[str, Any]], reference: Mapping[str, float]) -> list[dict[str, Any]]:
    """One row per trained technique (metrics.json with its step: `evidence.study_comparison`) with the book's
    accuracy as `reference` (or None); the step and provenance keys are None where a row lacks them, the audit's
    counts present where it has run."""
    keys = [c for c in dict.fromkeys((*COLUMNS, *STEP_KEYS, *START_KEYS, *FIELDS)) if c != "reference"]
    return [
        {
            **{c: row.get(c) for c in keys},
            **{k: row[k] for k in AUDIT_KEYS if k in row},  # only where the audit has run
            "reference": reference.get(row.get("technique")),
        }
        for row in rows
    ]


TESTS_NOTE = (
    "Each step compares a technique with the one before it on the same test images (paired by path): gained / "
    "lost count the images it gets right and the one before wrong, and the reverse; McNemar p is the exact "
    "(binomial) two-sided test on those two counts; the difference is paired, with Newcombe's 95 % interval "
    "(square-and-add of Wilson intervals)."
)


def kept_start_notes(table: Sequence[Mapping[str, Any]]) -> list[str]:
    """One sentence per technique that kept the weights it started from (no trained epoch beat them on
    validation), saying why its step from the technique that trained them is zero."""
    return [
        f"{row['technique']} kept the weights it started from: no training epoch beat their validation accuracy "
        f"({pct(row.get('start_val_accuracy'))}), so it was tested with them"
        + (f" and its step from {row['step_from']} compares a network with itself." if row.get("step_from") else ".")
        for row in table
        if row.get("kept_start") is True
    ]


def comparison_markdown(
    table: list[Mapping[str, Any]], reference_label: str, excluded: Mapping[str, str] | None = None
) -> str:
    """The table in Markdown, then where each row came from and what was left out (what README and the page show)."""
    audit = audited(table)
    lines = markdown_table(headers(table, reference_label), [table_cells(r, audit) for r in table])
    lines += ["", TESTS_NOTE]
    for note in kept_start_notes(table):
        lines += ["", note]
    lines += ["", "Where each row came from:", ""]
    lines += markdown_table(PROVENANCE_HEADERS, [provenance_cells(r) for r in table])
    if excluded:
        lines += ["", "Left out (not this study):", ""] + [f"- {t}: {why}" for t, why in excluded.items()]
    return "\n".join(lines) + "\n"


def write_comparison(
    table: list[Mapping[str, Any]], reference_label: str, folder: Path, excluded: Mapping[str, str] | None = None
) -> tuple[Path, Path]:
    """comparison.json (the rows, and the runs left out with why) and comparison.md in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / "comparison.json", folder / "comparison.md"
    payload = {"reference_label": reference_label, "rows": list(table), "excluded": dict(excluded or {})}
    json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(comparison_markdown(table, reference_label, excluded), encoding="utf-8")
    return json_path, md_path


def write_comparison_metrics(rows: list[Mapping[str, Any]], path: Path) -> Path:
    """The comparison's numbers by technique (`runs.comparison_metrics`) as a DVC metrics file: `dvc metrics show`
    prints what the study's MLflow run logs, "<technique>.<key>"."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(comparison_metrics(rows), indent=2) + "\n")
    return path


def legend_below(ax) -> None:
    """The legend under the x axis, where no bar, error bar or reference mark can be hidden behind it."""
    # markerscale: the reference marks are drawn bar-wide (s=1800), too wide for a legend entry
    ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, frameon=False, markerscale=0.3)


def _p_label(p: float) -> str:
    return f"p {p_text(p)}" if p < 0.001 else f"p = {p_text(p)}"


def annotate_steps(ax: Axes, steps: list[tuple[int, float, str]]) -> None:
    """Between bars x - 1 and x, above `top` (the higher of the two, in data units), a bracket and `text` (the
    step's difference and p-value); the y axis grows to hold them, its ticks stay at or below 100 %."""
    if not steps:
        return
    bracket = offset_copy(ax.transData, fig=ax.figure, y=20, units="points")
    for x, top, text in steps:
        ax.plot([x - 0.85, x - 0.15], [top, top], transform=bracket, color="0.35", linewidth=1, gid="step")
        ax.annotate(
            text,
            (x - 0.5, top),
            xytext=(0, 23),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
            gid="step",
        )
    low, high = ax.get_ylim()
    lines = max(t.count("\n") + 1 for _, _, t in steps)
    ax.set_ylim(low, high + (0.12 + 0.1 * lines) * (1.0 - low))
    ax.set_yticks([t for t in np.arange(low, 1.0 + 1e-9, 0.1 if 1.0 - low > 0.25 else 0.05)])


def comparison_figure(table: list[Mapping[str, Any]], reference_label: str, chance: float | None = None) -> Figure:
    """Bars of test accuracy with 95 % interval error bars, the book's numbers as red marks, chance as a line, and
    between consecutive bars the step: the paired accuracy difference and McNemar's p-value."""
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
    tops = np.fmax(acc, np.nan_to_num(high, nan=0.0))
    steps = []
    for k, row in enumerate(table):
        if k and row.get("step_from"):
            p = row.get("step_p_value")
            text = f"{points(row.get('step_difference'))}\n{_p_label(p)}" if is_number(p) else "not paired"
            text += "\nkept its start" if row.get("kept_start") is True else ""
            steps.append((k, max(tops[k - 1], tops[k]), text))
    annotate_steps(ax, steps)
    legend_below(ax)
    return fig

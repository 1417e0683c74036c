"""The data audit in the report: thumbnails of the top-ranked images of each audit list (probable label errors,
near-duplicate pairs with leakage first, off-task images), its counts, and how many of each technique's test
mistakes the audit lists as probable label errors (beside the accuracy in the comparison). Read from the audit
stage's files (`smallvision.audit.read_findings`); without them the section says so in one line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from smallvision.audit import Findings, flagged_mistakes
from smallvision.runs import PREDICTIONS, is_number, read_predictions
from smallvision.visualize.comparison import AUDIT_KEYS
from smallvision.visualize.plotting import blank_axes, grid_shape, new_figure, show_image, wrapped
from smallvision.visualize.report import FigureEntry, Section, table_html

if TYPE_CHECKING:
    from smallvision.visualize.sections import Report, Technique

PANEL = 1.9  # inches per thumbnail


def with_flagged_mistakes(
    rows: Sequence[Mapping[str, Any]], trained: Sequence[Technique], found: Findings | None
) -> list[dict]:
    """The comparison rows, each with its technique's test mistakes and how many of them the audit lists as
    probable label errors (`comparison.AUDIT_KEYS`); unchanged where the audit has not run or a technique has no
    test predictions."""
    folders = {t.name: t for t in trained}
    out = []
    for row in rows:
        t = folders.get(row.get("technique"))
        if found is None or t is None or t.missing(PREDICTIONS):
            out.append(dict(row))
            continue
        wrong = [p.path for p in read_predictions(t.file(PREDICTIONS)) if not p.correct]
        out.append({**row, AUDIT_KEYS[0]: len(wrong), AUDIT_KEYS[1]: flagged_mistakes(wrong, found)})
    return out


def summary_metrics(found: Findings | None) -> dict[str, float]:
    """The audit's counts as "audit.<key>" metrics (the study's MLflow run); none when it has not run."""
    if found is None:
        return {}
    return {f"audit.{key}": float(value) for key, value in found.summary.items() if is_number(value)}


def thumbnails_figure(
    images: list[np.ndarray], titles: list[str], names: list[str], heading: str, columns: int
) -> Figure:
    """One panel per image: its title above, its file name and split below."""
    rows, cols = grid_shape(len(images), columns)
    fig = new_figure(PANEL * cols + 0.4, PANEL * 1.3 * rows + 0.7)
    fig.suptitle(wrapped(heading, PANEL * cols + 0.4, 12), fontsize=12)
    for k, ax in enumerate(fig.subplots(rows, cols, squeeze=False).flat):
        if k >= len(images):
            blank_axes(ax)
            continue
        show_image(ax, images[k], titles[k], fontsize=8)
        ax.set_xlabel(names[k], fontsize=7)
    return fig


def pairs_figure(pairs: list[tuple[np.ndarray, np.ndarray]], rows_: list[dict], heading: str, columns: int) -> Figure:
    """Each pair side by side (two panels): the similarity above the first, each image's split and label above
    it, its file name below; a leaking pair's titles in red."""
    per_row = max(1, columns // 2)
    rows, pairs_per_row = grid_shape(len(pairs), per_row)
    cols = 2 * pairs_per_row
    fig = new_figure(PANEL * cols + 0.4, PANEL * 1.3 * rows + 0.7)
    fig.suptitle(wrapped(heading, PANEL * cols + 0.4, 12), fontsize=12)
    axes = fig.subplots(rows, cols, squeeze=False)
    for k in range(rows * pairs_per_row):
        left, right = (
            axes[k // pairs_per_row, 2 * (k % pairs_per_row)],
            axes[k // pairs_per_row, 2 * (k % pairs_per_row) + 1],
        )
        if k >= len(pairs):
            blank_axes(left)
            blank_axes(right)
            continue
        d = rows_[k]
        color = "firebrick" if d["leakage"] else "black"
        similarity = f"similarity {d['similarity']:.3f}{', leakage' if d['leakage'] else ''}"
        for ax, image, side, above in ((left, pairs[k][0], "a", similarity), (right, pairs[k][1], "b", "")):
            show_image(ax, image, f"{above}\n{d[f'split_{side}']}: {d[f'label_{side}']}", fontsize=8, color=color)
            ax.set_xlabel(Path(d[f"path_{side}"]).name, fontsize=7)
    return fig


INTRO = (
    "What the audit stage found in the data, from the frozen base's features of every image: probable label errors "
    "(confident learning on out-of-fold class probabilities; score: label quality, low = doubtful), near-duplicate "
    "pairs (cosine similarity of the features; a pair across train or val and test leaks a test image, shown "
    "first, in red) and off-task images (least typical among their neighbours; score: typicality). The audit "
    "changes nothing: a finding a person accepts goes into the exclusion list (data.exclude)."
)


def audit_section(report: Report) -> Section:
    sec = Section("audit", "Data audit", INTRO)
    found, opts = report.audit, report.visualize.audit
    if found is None:
        sec.notes.append(
            f"The data audit has not run (no {report.audit_folder or 'audit folder'}): dvc repro audit lists "
            "probable label errors, near-duplicates and off-task images."
        )
        return sec
    count = int(opts.thumbnails)
    sec.html = table_html(["finding", "count"], [[key.replace("_", " "), str(v)] for key, v in found.summary.items()])
    stale: set[str] = set()

    def known(*paths: str) -> bool:
        missing = [p for p in paths if report.record(p) is None]
        stale.update(missing)
        return not missing

    def load(path: str) -> np.ndarray:
        return report.load(report.record(path).file, int(opts.image_size))

    for key, name, what, describe in (
        ("label_issues", "audit_label_issues.png", "probable label errors", _label_title),
        ("off_task", "audit_off_task.png", "off-task images", _off_task_title),
    ):
        rows = getattr(found, key)
        shown = [r for r in rows if known(r["path"])][:count]
        if not shown:
            sec.notes.append(f"no {what} listed")
            continue
        fig = thumbnails_figure(
            [load(r["path"]) for r in shown],
            [describe(r) for r in shown],
            [f"{Path(r['path']).name} ({r['split']})" for r in shown],
            f"{what.capitalize()}: the {len(shown)} top-ranked of {len(rows)}",
            int(opts.columns),
        )
        sec.figures.append(FigureEntry(report.save(fig, name), f"{what}, most doubtful first."))
    pairs = sorted(found.duplicates, key=lambda d: (not d["leakage"], -d["similarity"]))
    shown_pairs = [d for d in pairs if known(d["path_a"], d["path_b"])][:count]
    if shown_pairs:
        fig = pairs_figure(
            [(load(d["path_a"]), load(d["path_b"])) for d in shown_pairs],
            shown_pairs,
            f"Near-duplicate pairs: the {len(shown_pairs)} top-ranked of {len(pairs)} (leakage into test first)",
            int(opts.columns),
        )
        sec.figures.append(
            FigureEntry(report.save(fig, "audit_near_duplicates.png"), "near-duplicate pairs, leakage first.")
        )
    else:
        sec.notes.append("no near-duplicate pairs listed")
    if stale:
        sec.notes.append(
            f"{len(stale)} images the audit lists are not in the manifest (e.g. {min(stale)}): the "
            "audit is older than the split; rerun it (dvc repro audit)"
        )
    return sec


def _label_title(row: dict) -> str:
    return f"labelled {row['label']}\nlooks {row['suggested']}, {row['score']:.3g}"


def _off_task_title(row: dict) -> str:
    return f"{row['label']}\ntypicality {row['score']:.3g}"

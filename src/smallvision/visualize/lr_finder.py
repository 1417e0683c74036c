"""The learning-rate finder's result (`python pipelines/lr_find.py`): its files in a technique's folder, its curve,
and the report's section that shows the curve of every technique that has one.

lr_find.json holds the rates tried, the loss at each (Lightning's smoothed training loss), the suggested rate (the
steepest descent of the loss) and the rate the technique is configured with.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from smallvision.errors import DataError
from smallvision.files import atomic_write_text
from smallvision.visualize.plotting import new_figure, save
from smallvision.visualize.report import FigureEntry, Section

LR_FIND_JSON = "lr_find.json"
LR_FIND_PNG = "lr_find.png"


def write_lr_find(folder: Path, result: dict, dpi: int) -> tuple[Path, Path]:
    """lr_find.json and its curve, lr_find.png, in `folder` (a technique's output folder)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / LR_FIND_JSON, json.dumps(result, indent=2))
    return folder / LR_FIND_JSON, save(lr_find_figure(result), folder / LR_FIND_PNG, dpi)


def read_lr_find(folder: Path) -> dict | None:
    """A technique's lr_find.json, None when the finder has not been run for it."""
    path = Path(folder) / LR_FIND_JSON
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({err}); rerun python pipelines/lr_find.py") from err
    if not {"lr", "loss", "suggestion", "technique"} <= set(result):
        raise DataError(f"{path} lacks lr, loss, suggestion or technique; rerun python pipelines/lr_find.py")
    return result


def lr_find_figure(result: dict) -> Figure:
    """Loss against learning rate (log scale), the suggested rate and the configured one marked."""
    fig = new_figure(6.4, 3.8)
    ax = fig.add_subplot()
    lrs, losses = np.asarray(result["lr"], float), np.asarray(result["loss"], float)
    ax.plot(lrs, losses, color="tab:blue", label="training loss (smoothed)")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    suggestion, configured = result["suggestion"], result.get("configured_lr")
    if suggestion is not None:
        k = int(np.argmin(np.abs(lrs - suggestion)))
        ax.plot([lrs[k]], [losses[k]], "o", color="tab:red", markersize=8, label=f"suggested {suggestion:.2g}")
    if configured:
        ax.axvline(configured, color="0.4", linestyle="--", label=f"configured {configured:.2g}")
    finite = losses[np.isfinite(losses)]
    if finite.size:  # the loss explodes at the end: keep the interesting part in view
        ax.set_ylim(finite.min() - 0.05 * np.ptp(finite), min(finite.max(), 2 * np.median(finite) + 0.1))
    ax.legend(fontsize=8)
    ax.set_title(f"Learning-rate finder, {result['technique']} ({result.get('optimizer', '')})", fontsize=10)
    return fig


def lr_find_section(report) -> Section:
    """The finder's curve of each trained technique that has one (`report`: the `visualize.sections.Report`)."""
    sec = Section(
        "lr_find",
        "Learning-rate finder",
        "Training loss while the learning rate grows exponentially batch after batch (Lightning's range test, "
        "`python pipelines/lr_find.py technique=<t>`); the suggested rate is where the loss falls fastest.",
    )
    for t in report.trained:
        result = read_lr_find(t.folder)
        if result is None:
            continue
        path = report.save(lr_find_figure(result), f"lr_find_{t.name}.png", t.name)
        suggestion = "none" if result["suggestion"] is None else f"{result['suggestion']:.2g}"
        sec.figures.append(
            FigureEntry(path, f"{t.name}: suggested {suggestion}, configured {result.get('configured_lr', 'unknown')}.")
        )
    if not sec.figures:
        sec.notes.append("no technique has a learning-rate finder result: python pipelines/lr_find.py technique=<t>")
    return sec

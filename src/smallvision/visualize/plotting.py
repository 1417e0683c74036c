"""Figure helpers shared by every visualization: pyplot-free figures, saving, image conversions."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def new_figure(width: float, height: float) -> Figure:
    """A figure that belongs to no pyplot state (nothing to close, safe without a display); Agg renders it."""
    return Figure(figsize=(width, height), layout="constrained")


def save(fig: Figure, path: Path, dpi: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def wrapped(text: str, width: float, fontsize: float) -> str:
    """`text` broken at spaces into lines that fit `width` inches at `fontsize` points (DejaVu Sans averages about
    0.5 em per character; 0.55 leaves a margin), so a long title never runs off the figure's edges."""
    return textwrap.fill(
        text, max(16, int(width * 72 / (0.55 * fontsize))), break_long_words=False, break_on_hyphens=False
    )


def show_image(ax: Axes, image: np.ndarray, title: str | None = None, fontsize: float = 9, **title_kw) -> None:
    """An RGB image without ticks, with an optional title."""
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize, **title_kw)


def blank_axes(ax: Axes, text: str = "") -> None:
    """An unused grid cell: no frame; `text` says why it is empty (never a silent blank panel)."""
    ax.set_axis_off()
    if text:
        ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, color="0.4", transform=ax.transAxes, wrap=True)


def grid_shape(count: int, columns: int) -> tuple[int, int]:
    """(rows, columns) of a grid that holds `count` panels, at most `columns` wide, at least 1 x 1."""
    columns = max(1, min(columns, count))
    return max(1, -(-count // columns)), columns


def to_unit(image: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 in [0, 1]."""
    return np.asarray(image, dtype=np.float32) / 255.0

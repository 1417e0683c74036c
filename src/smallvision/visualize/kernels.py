"""First-layer kernels as images: each kernel of a network's first convolution as a small RGB tile, so the reader
sees the edge and colour detectors that training (or ImageNet pretraining) grows out of random initial weights.

Each kernel is normalised on its own (its smallest weight black, its largest white, over its three colour
channels together, so its colour survives): the tiles show each kernel's pattern, not how strong it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from smallvision.visualize.plotting import grid_shape, new_figure, show_image, wrapped

SEPARATOR = 1.0  # white lines between the tiles


def first_conv(net: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first convolution that reads the image (name, module): the first Conv2d registered."""
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            return name, m
    raise ValueError(f"{type(net).__name__} has no Conv2d")


def kernel_tiles(weight: torch.Tensor) -> np.ndarray:
    """(O, 3, k, k) conv weights -> (O, k, k, 3) RGB tiles in [0, 1], each kernel min-max normalised on its own
    (a constant kernel is mid-grey)."""
    w = weight.detach().float().cpu()
    if w.ndim != 4 or w.shape[1] != 3:
        raise ValueError(f"expected RGB kernels (out, 3, k, k), got shape {tuple(w.shape)}")
    low = w.amin(dim=(1, 2, 3), keepdim=True)
    span = w.amax(dim=(1, 2, 3), keepdim=True) - low
    tiles = torch.where(span > 0, (w - low) / span.clamp_min(1e-30), torch.full_like(w, 0.5))
    return tiles.permute(0, 2, 3, 1).numpy()


def tile_mosaic(tiles: np.ndarray, columns: int) -> np.ndarray:
    """The tiles in a grid `columns` wide, one white pixel apart (and around), unused cells white."""
    count, k = tiles.shape[0], tiles.shape[1]
    rows, cols = grid_shape(count, columns)
    out = np.full((rows * (k + 1) + 1, cols * (k + 1) + 1, 3), SEPARATOR, dtype=np.float32)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        out[1 + r * (k + 1) : 1 + r * (k + 1) + k, 1 + c * (k + 1) : 1 + c * (k + 1) + k] = tile
    return out


def moved(weight: torch.Tensor, start: torch.Tensor) -> str:
    """How far training moved the kernels: the norm of the change relative to the starting weights' norm."""
    weight, start = weight.detach().float(), start.detach().float()
    change = float((weight - start).norm() / start.norm().clamp_min(1e-30))
    return f"moved {100 * change:.2g} % of its initial norm"


@dataclass
class KernelSet:
    """One state of a first conv: a label ("after training", "random initialisation", ...) and its weights."""

    label: str
    weight: torch.Tensor


def kernels_figure(sets: list[KernelSet], title: str, columns: int = 8, panel_width: float = 4.2) -> Figure:
    """The states side by side, one panel each, every kernel a tile; panel titles: the label, kernel count and
    size."""
    mosaics = [tile_mosaic(kernel_tiles(s.weight), columns) for s in sets]
    height = max(m.shape[0] / m.shape[1] for m in mosaics) * panel_width
    width = panel_width * len(sets)
    fig = new_figure(width, height + 1.0)
    fig.suptitle(wrapped(title, width, 12), fontsize=12)
    for ax, s, m in zip(fig.subplots(1, len(sets), squeeze=False)[0], sets, mosaics):
        out, _, k, _ = s.weight.shape
        show_image(ax, m, wrapped(f"{s.label}: {out} kernels {k}x{k}", panel_width, 10), fontsize=10)
        ax.images[0].set_interpolation("nearest")  # a 3 x 3 kernel is 3 x 3 blocks, not a blur
    return fig

"""Intermediate activations: every channel of chosen layers for one image, as labelled mosaics (Chollet 5.4.1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import nn

from smallvision.visualize.plotting import grid_shape, new_figure, show_image

# A channel whose values vary less than this (relative to the layer's largest value) carries nothing for
# this image: it is drawn as a grey tile and counted in the title, never as a silent black square.
BLANK_RTOL = 1e-6
UNUSED = 256.0  # above the 0-255 display range: the colour map's "over" colour (white)


@dataclass
class LayerActivation:
    """One layer's feature maps for one image. `maps` (C, h, w) are the shown channels (the first C of
    `channels`); `blank` lists the shown channels that are constant on this image."""

    name: str
    maps: np.ndarray
    channels: int
    blank: list[int]


def capture(net: nn.Module, x: torch.Tensor, layers: list[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    """The output of each named layer for the batch `x`, from one forward pass (hooks removed after)."""
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in layers:

        def keep(_module, _inputs, output, name=name):
            outputs[name] = output.detach().clone()  # clone: a later in-place op must not rewrite it

        handles.append(module.register_forward_hook(keep))
    try:
        net.eval()
        with torch.no_grad():
            net(x)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def layer_activations(
    net: nn.Module, x: torch.Tensor, layers: list[tuple[str, nn.Module]], max_channels: int | None = None
) -> list[LayerActivation]:
    """The activations of one image (`x` is (1, 3, H, W), normalised) at each layer, in order."""
    if x.shape[0] != 1:
        raise ValueError(f"expected one image, got a batch of {x.shape[0]}")
    outputs = capture(net, x, layers)
    result = []
    for name, _ in layers:
        maps = outputs[name][0].float().cpu().numpy()
        shown = maps[:max_channels] if max_channels else maps
        scale = max(float(np.abs(maps).max()), 1e-12)
        blank = [i for i, m in enumerate(shown) if float(m.max() - m.min()) <= BLANK_RTOL * scale]
        result.append(LayerActivation(name, shown, maps.shape[0], blank))
    return result


def mosaic(layer: LayerActivation, columns: int) -> np.ndarray:
    """The channels side by side, `columns` wide; each standardised as in the book (mean 128, std 64 on a 0-255
    scale). Blank channels are NaN (drawn grey), unused cells of the last row UNUSED (drawn white)."""
    count, h, w = layer.maps.shape
    rows, cols = grid_shape(count, columns)
    grid = np.full((rows * h, cols * w), UNUSED, dtype=np.float32)
    blank = set(layer.blank)
    for i, channel in enumerate(layer.maps):
        r, c = divmod(i, cols)
        if i in blank:
            grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = np.nan
            continue
        std = float(channel.std())
        tile = np.clip((channel - channel.mean()) / (std if std > 0 else 1.0) * 64 + 128, 0, 255)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
    return grid


def activation_figure(
    image: np.ndarray, layers: list[LayerActivation], title: str, columns: int = 32, width: float = 16.0
) -> Figure:
    """The input image, then one mosaic per layer (tiles the same size on screen whatever the map size).

    Axes: 1 (the input) + one per layer; each layer's title gives its name, the map shape and how many
    channels are blank on this image.
    """
    shapes = [grid_shape(len(layer.maps), columns) for layer in layers]
    cols = max([c for _, c in shapes] + [1])
    tile = width / cols
    input_rows = max(2, min(4, cols // 4))
    heights = [input_rows] + [r for r, _ in shapes]
    fig = new_figure(width, tile * sum(heights) + 0.45 * (len(layers) + 1) + 0.6)
    grid = fig.add_gridspec(len(heights), 1, height_ratios=heights)
    fig.suptitle(title, fontsize=13)
    show_image(fig.add_subplot(grid[0]), image, f"input ({image.shape[1]}x{image.shape[0]} px)", fontsize=10)
    cmap = colormaps["viridis"].with_extremes(bad="0.75", over="white")
    for k, (layer, (rows, c)) in enumerate(zip(layers, shapes), start=1):
        ax = fig.add_subplot(grid[k])
        ax.imshow(
            mosaic(layer, columns),
            cmap=cmap,
            vmin=0,
            vmax=255,
            interpolation="nearest",
            extent=(0, c, rows, 0),
            aspect="equal",
        )
        ax.set_xticks([])
        ax.set_yticks([])
        _, h, w = layer.maps.shape
        shown = (
            f"{len(layer.maps)} of {layer.channels} channels"
            if len(layer.maps) < layer.channels
            else f"{layer.channels} channels"
        )
        note = f"; {len(layer.blank)} blank on this image (grey)" if layer.blank else ""
        ax.set_title(f"{layer.name}: {shown}, {w}x{h}{note}", fontsize=10, loc="left")
    return fig

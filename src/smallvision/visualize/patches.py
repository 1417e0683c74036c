"""Top-activating patches (Zeiler & Fergus, 2014): for a channel, the image patches that excite it most.

One pass over a set of images (`top_activations`): hooks on every chosen layer keep, per channel, the running
top-k of the images' maxima (each image counts once, at the position of its maximum) with the image's index and
that position. The report ranks only the positions whose receptive field lies inside the image where there are
any: at the border a padded network's channels often fire on the image's edge itself (the padding's contrast),
which would fill the grid with half-grey patches. Each top position is then cut out of its image as the channel's receptive field at that position
(`receptive.Geometry`), and a 3 x 3 mosaic per channel shows the nine best.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from smallvision.visualize.filters import capture_until
from smallvision.visualize.plotting import blank_axes, grid_shape, new_figure, show_image, wrapped
from smallvision.visualize.receptive import Geometry

GREY = 128  # where a receptive field reaches outside the image (padding), and between the patches of a mosaic


@dataclass
class Top:
    """One layer's running top-k: for every channel, sorted best first, the activation value, the image index
    and the (row, column) of the map position where that image's maximum is."""

    values: torch.Tensor  # (C, k) float
    images: torch.Tensor  # (C, k) long
    rows: torch.Tensor  # (C, k) long
    cols: torch.Tensor  # (C, k) long


def _merge(top: Top | None, out: torch.Tensor, first: int, k: int, region: tuple[slice, slice]) -> Top:
    """Fold a batch's maps `out` (N, C, h, w) of images first .. first + N - 1, within `region` (rows, columns),
    into the running top-k."""
    rows, cols = region
    out = out[:, :, rows, cols]
    n, c, _, w = out.shape
    best, where = out.detach().float().flatten(2).max(dim=2)  # (N, C): each image's maximum, its first argmax
    new = Top(
        best.T.cpu(),
        torch.arange(first, first + n).expand(c, n),
        (where // w).T.cpu() + (rows.start or 0),
        (where % w).T.cpu() + (cols.start or 0),
    )
    if top is not None:  # earlier images first: the stable sort keeps them first among equal values
        new = Top(*(torch.cat([a, b], dim=1) for a, b in zip(vars(top).values(), vars(new).values())))
    order = torch.sort(new.values, dim=1, descending=True, stable=True).indices[:, :k]
    return Top(*(torch.gather(t, 1, order) for t in vars(new).values()))


def top_activations(
    net: nn.Module,
    layers: list[tuple[str, nn.Module]],
    batches: Iterable[torch.Tensor],
    k: int = 9,
    regions: dict[str, tuple[slice, slice]] | None = None,
) -> dict[str, Top]:
    """Per layer, every channel's top-k images by their maximum activation, over all the `batches` (normalised
    network inputs, in image order) in one pass; the forward stops once every layer has run. `regions` limits
    a layer's maxima to a block of map positions (rows, columns); None: every position."""
    net.eval()
    tops: dict[str, Top | None] = {name: None for name, _ in layers}
    everywhere = (slice(None), slice(None))
    seen = 0

    def fold(name: str, out: torch.Tensor) -> None:  # at once, before a later in-place op can rewrite `out`
        tops[name] = _merge(tops[name], out, seen, k, (regions or {}).get(name, everywhere))

    handles = [m.register_forward_hook(lambda _m, _in, out, name=name: fold(name, out)) for name, m in layers]
    try:
        with torch.no_grad():
            for x in batches:
                capture_until(net, [m for _, m in layers], x)  # stops once every layer has run (and been folded)
                seen += len(x)
    finally:
        for h in handles:
            h.remove()
    if seen == 0:
        raise ValueError("no images to rank the patches by")
    return tops  # type: ignore[return-value]


def crop(image: np.ndarray, geometry: Geometry, row: int, col: int) -> np.ndarray:
    """The receptive field of map position (row, col) in `image` (H, W, 3), as a square of the field's size (at
    most the image's) with grey where the field reaches outside the image."""
    h, w = image.shape[:2]
    side = min(geometry.size, h, w) if geometry.exact else max(h, w)
    r0, r1, r_cut = geometry.window(row, h)
    c0, c1, c_cut = geometry.window(col, w)
    out = np.full((side, side, 3), GREY, dtype=np.uint8)
    part = image[r0:r1, c0:c1][:side, :side]
    # a field cut at the low side (padding) keeps its place in the square; one cut at the high side starts at 0
    dr, dc = min(r_cut, side - part.shape[0]), min(c_cut, side - part.shape[1])
    out[dr : dr + part.shape[0], dc : dc + part.shape[1]] = part
    return out


def mosaic(patches: list[np.ndarray], columns: int = 3, gap: int = 1) -> np.ndarray:
    """Equal-sized patches in a grid, `gap` grey pixels apart; empty cells grey."""
    side = patches[0].shape[0]
    rows, cols = grid_shape(len(patches), columns)
    out = np.full((rows * (side + gap) - gap, cols * (side + gap) - gap, 3), GREY, dtype=np.uint8)
    for i, p in enumerate(patches):
        r, c = divmod(i, cols)
        out[r * (side + gap) : r * (side + gap) + side, c * (side + gap) : c * (side + gap) + side] = p
    return out


@dataclass
class ChannelPatches:
    """One channel's best patches (best first) and their activations; `silent`: it never exceeded 0 on the
    images (a ReLU channel that is off for all of them)."""

    channel: int
    patches: list[np.ndarray]
    values: list[float]

    @property
    def silent(self) -> bool:
        return max(self.values) <= 0


@dataclass
class LayerPatches:
    name: str
    geometry: Geometry
    channels: list[ChannelPatches]


def layer_patches(
    name: str, top: Top, channels: list[int], geometry: Geometry, image: Callable[[int], np.ndarray]
) -> LayerPatches:
    """The chosen channels' patches from the top-k (`image(i)` gives image i as the network saw it)."""
    shown = []
    for ch in channels:
        patches = [
            crop(image(int(i)), geometry, int(r), int(c)) for i, r, c in zip(top.images[ch], top.rows[ch], top.cols[ch])
        ]
        shown.append(ChannelPatches(ch, patches, [float(v) for v in top.values[ch]]))
    return LayerPatches(name, geometry, shown)


def describe(geometry: Geometry, image_size: int) -> str:
    if not geometry.exact or geometry.size >= 2 * image_size:
        return f"receptive field over {geometry.size} px: every position sees the whole {image_size} px image"
    return f"receptive field {geometry.size} px, stride {geometry.jump} px"


def patches_figure(
    layers: list[LayerPatches], title: str, image_size: int, columns: int = 8, panel: float = 1.7
) -> Figure:
    """A block per layer (titled with its receptive field), a 3 x 3 mosaic per channel titled with the channel
    and its best activation; a channel that never fired says so instead of showing nine arbitrary patches."""
    blocks = [(layer, *grid_shape(len(layer.channels), columns)) for layer in layers]
    cols = max([c for *_, c in blocks] + [1])
    fig = new_figure(panel * cols, panel * 1.15 * sum(r for _, r, _ in blocks) + 0.5 * len(blocks) + 0.6)
    fig.suptitle(wrapped(title, panel * cols, 13), fontsize=13)
    subfigs = fig.subfigures(len(blocks), 1, height_ratios=[r for _, r, _ in blocks], squeeze=False)[:, 0]
    for sub, (layer, r, _) in zip(subfigs, blocks):
        sub.suptitle(
            wrapped(f"layer {layer.name}: {describe(layer.geometry, image_size)}", panel * cols, 11),
            fontsize=11,
            x=0.0,
            ha="left",
        )
        for k, ax in enumerate(sub.subplots(r, cols, squeeze=False).flat):
            if k >= len(layer.channels):
                blank_axes(ax)
                continue
            ch = layer.channels[k]
            if ch.silent:
                blank_axes(ax, f"#{ch.channel}: never above 0")
                continue
            show_image(ax, mosaic(ch.patches), f"#{ch.channel}: max {ch.values[0]:.3g}", fontsize=8)
    return fig

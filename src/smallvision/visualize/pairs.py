"""Filter / feature pairs, going deeper (Chollet 5.4): for one image and one channel per layer, the channel's
pattern (what excites it most, by gradient ascent: filters.py) beside the feature map it produces on the image.

The channel of each layer is the one with the highest mean activation on the image, the same quantity the
gradient ascent maximises: the pattern then shows what that channel looks for, the map where the image has it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from pytorch_grad_cam.utils.image import show_cam_on_image

from smallvision.visualize.filters import FilterPattern
from smallvision.visualize.plotting import new_figure, show_image, to_unit, wrapped


def strongest_channel(maps: np.ndarray) -> int:
    """The channel of `maps` (C, h, w) with the highest mean activation (the first of equals)."""
    return int(np.argmax(maps.reshape(len(maps), -1).mean(axis=1)))


@dataclass
class Pair:
    """One layer's channel: its gradient-ascent pattern and its feature map (h, w) on the image."""

    layer: str
    pattern: FilterPattern
    feature: np.ndarray

    @property
    def constant(self) -> bool:
        return float(np.ptp(self.feature)) == 0.0


def upsampled(feature: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A feature map stretched over the image (bilinear) and scaled to [0, 1] for an overlay."""
    t = torch.from_numpy(np.asarray(feature, dtype=np.float32))[None, None]
    up = torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
    span = float(up.max() - up.min())
    return (up - up.min()) / span if span > 0 else np.zeros_like(up)


def pairs_figure(
    image: np.ndarray, pairs: list[Pair], title: str, image_weight: float = 0.5, panel: float = 2.2
) -> Figure:
    """A row per layer, first to last: the pattern, the feature map (its own colour scale) and the map over the
    image. Panel titles name the layer, the channel and the map's size."""
    fig = new_figure(panel * 3 + 0.4, panel * 1.2 * len(pairs) + 0.8)
    fig.suptitle(wrapped(title, panel * 3 + 0.4, 12), fontsize=12)
    axes = fig.subplots(len(pairs), 3, squeeze=False)
    cmap = colormaps["viridis"]
    for row, p in zip(axes, pairs):
        h, w = p.feature.shape
        show_image(row[0], p.pattern.image, f"{p.layer} #{p.pattern.index}: pattern", fontsize=9)
        note = ", constant" if p.constant else ""
        row[1].imshow(p.feature, cmap=cmap, interpolation="nearest")
        row[1].set_xticks([])
        row[1].set_yticks([])
        row[1].set_title(f"its map on the image ({w}x{h}{note})", fontsize=9)
        overlay = show_cam_on_image(
            to_unit(image), upsampled(p.feature, image.shape[:2]), use_rgb=True, image_weight=image_weight
        )
        show_image(row[2], overlay, "the map over the image", fontsize=9)
    return fig

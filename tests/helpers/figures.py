"""Figures of the visualize stage built from a tiny network or generated images, then drawn (Agg): the tests count
the axes that show an image, read their titles, and check every drawn panel has content (never a blank or black
square)."""

from __future__ import annotations

import time

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from smallvision.models.convnet import SmallConvNet

TINY = 64  # the small convnet's last pool is 2 x 2 here (at 46-53 px it is 1 x 1: every channel constant)
CLASSES = ["cat", "dog"]
BUILD_TIMES: dict[str, tuple[float, float]] = {}  # seconds per figure builder (with its drawing), printed with -s


def tiny_scene(seed: int, size: int = TINY) -> np.ndarray:
    """A uint8 RGB image with structure: a gradient background, a bright disc and a dark bar, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.stack([60 + 80 * xx, 40 + 60 * yy, 90 - 40 * xx], axis=-1)
    cy, cx = rng.uniform(0.3, 0.7, 2)
    image[(yy - cy) ** 2 + (xx - cx) ** 2 < 0.04] = rng.uniform(170, 250, 3)
    r = rng.integers(0, size - 6)
    image[r : r + 4, :] = 10
    return np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)


def tiny_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> the scratch net's input (Keras rescale 1/255)."""
    return torch.from_numpy(np.asarray(images, dtype=np.float32) / 255).permute(0, 3, 1, 2).contiguous()


def tiny_net(seed: int = 0) -> SmallConvNet:
    torch.manual_seed(seed)
    return SmallConvNet(TINY, 1).eval()


def draw_figure(fig, dpi: int = 40) -> np.ndarray:
    """Render the figure with Agg (constrained layout runs here) and return its RGB pixels; every text drawn
    (titles, labels, notes) lies inside the figure, none cut off at an edge."""
    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer, (width, height) = canvas.get_renderer(), canvas.get_width_height()
    ticks = {id(t) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis) for t in axis.get_ticklabels(which="both")}
    for text in fig.findobj(Text):  # tick labels outside the view limits are laid out but never drawn: skipped
        if text.get_visible() and text.get_text().strip() and id(text) not in ticks:
            box = text.get_window_extent(renderer)
            assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1, (
                f"{text.get_text()!r} runs off the figure ({box.bounds} in {width}x{height})"
            )
    return np.asarray(canvas.buffer_rgba())[..., :3].astype(float)


def flat_text(text: str) -> str:
    """A title with its line breaks (titles are wrapped to the figure's width) as single spaces."""
    return " ".join(text.split())


def image_panels(fig) -> list:
    """The axes that show an image, in the order they were added."""
    return [ax for ax in fig.axes if ax.images]


def colorbar_axes(fig) -> list:
    return [ax._colorbar for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


def panel_pixels(pixels: np.ndarray, ax) -> np.ndarray:
    """The drawn pixels of the axes' image (inside the axes frame)."""
    box = ax.images[0].get_window_extent().intersection(ax.images[0].get_window_extent(), ax.get_window_extent())
    h = pixels.shape[0]
    top, bottom = int(np.ceil(h - box.y1)) + 1, int(np.floor(h - box.y0)) - 1
    left, right = int(np.ceil(box.x0)) + 1, int(np.floor(box.x1)) - 1
    crop = pixels[max(top, 0) : bottom, max(left, 0) : right]
    assert crop.size, f"panel {ax.get_title()!r} has no drawn pixels"
    return crop


def assert_not_blank(pixels: np.ndarray, ax) -> None:
    """Both the array the panel shows and what was drawn of it vary, and the drawing is not black."""
    data = np.asarray(ax.images[0].get_array(), dtype=float)
    label = ax.get_title() or ax.get_title(loc="left")
    assert np.nanstd(data) > 0, f"panel {label!r} shows a constant array"
    crop = panel_pixels(pixels, ax)
    assert crop.std() > 2, f"panel {label!r} is drawn blank (std {crop.std():.2f})"
    assert crop.mean() > 10, f"panel {label!r} is drawn (almost) black"


def timed_build(name: str, build):
    """Build and draw a figure, noting the time (not asserted: the CPU may be shared with other jobs)."""
    start = time.perf_counter()
    fig = build()
    built = time.perf_counter()
    pixels = draw_figure(fig)
    BUILD_TIMES[name] = (built - start, time.perf_counter() - built)
    print(f"{name}: built in {built - start:.2f} s, drawn in {time.perf_counter() - built:.2f} s")
    return fig, pixels

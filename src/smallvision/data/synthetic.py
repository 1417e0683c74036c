"""A generated, offline image dataset: one folder per class, the class being a shape.

The only class cue is the outline of the shape. Everything else is drawn at random for
every image, whatever its class: the shape's colour (a light one), size, position and a
small rotation; the background (a dark colour with a gradient in a random direction, plus
noise). Every shape covers the same area as a circle of the same size, so brightness says
nothing about the class either. The small convnet of the study, trained from scratch on
40 images per class at 64 px (RMSprop 1e-4), is at chance for the first epochs and near
perfect after about five: enough to assert that training works, not trivially so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

_SUPERSAMPLE = 4  # the shape is drawn large, then reduced: smooth edges like a photo, no aliasing cue
_JPEG_QUALITY = 90
_RADIUS = (0.25, 0.4)  # of the image size: radius of the circle with the shape's area
_OFFSET = 0.1  # largest distance of the shape's centre from the image centre, of the image size
_ROTATION = 0.15  # largest rotation, radians, either way
_BACKGROUND = (0, 90)  # channel values of the dark background colour
_FOREGROUND = (160, 256)  # channel values of the light shape colour
_GRADIENT = 30  # largest change of a background channel across the image
_NOISE = 6.0  # standard deviation of the pixel noise

Outline = Callable[[float], list[tuple[float, float]]]


def _polygon(corners: int, inner: float | None = None, upright: float = 0.0) -> Outline:
    """A shape with `corners` points (a star when `inner` gives the inner radius), scaled to the unit circle's area."""
    n = corners * (2 if inner else 1)
    radii = [1.0 if (i % 2 == 0 or not inner) else inner for i in range(n)]
    unit = [(r * math.cos(2 * math.pi * i / n), r * math.sin(2 * math.pi * i / n)) for i, r in enumerate(radii)]
    area = 0.5 * abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(unit, unit[1:] + unit[:1])))
    scale = math.sqrt(math.pi / area)

    def points(angle: float) -> list[tuple[float, float]]:
        a = angle + upright
        return [
            (scale * r * math.cos(a + 2 * math.pi * i / n), scale * r * math.sin(a + 2 * math.pi * i / n))
            for i, r in enumerate(radii)
        ]

    return points


SHAPES: dict[str, Outline | None] = {
    "circle": None,  # drawn as an ellipse
    "square": _polygon(4, upright=math.pi / 4),  # sides horizontal and vertical
    "triangle": _polygon(3, upright=-math.pi / 2),  # pointing up
    "pentagon": _polygon(5, upright=-math.pi / 2),
    "hexagon": _polygon(6),
    "star": _polygon(5, inner=0.45, upright=-math.pi / 2),
}


def generate(
    out_dir: Path,
    *,
    classes: Sequence[str],
    per_class: int,
    image_size: int,
    seed: int,
) -> Path:
    """Write `per_class` JPEGs of image_size x image_size pixels to out_dir/<class>/; return out_dir. `classes` are
    two or more distinct names of SHAPES (data.synthetic, checked by `smallvision.schema.Synthetic`)."""
    classes = list(classes)
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    for name in classes:
        (out_dir / name).mkdir(parents=True, exist_ok=True)
    for index in range(int(per_class)):  # classes interleaved: all draw from the same stream of nuisances
        for name in classes:
            _draw(name, int(image_size), rng).save(out_dir / name / f"{name}_{index:04d}.jpg", quality=_JPEG_QUALITY)
    return out_dir


def _draw(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    canvas = Image.fromarray(_background(size, rng))
    big = size * _SUPERSAMPLE
    radius = rng.uniform(*_RADIUS) * big
    cx, cy = big / 2 + rng.uniform(-_OFFSET, _OFFSET, 2) * big
    mask = Image.new("L", (big, big), 0)
    outline = SHAPES[shape]
    if outline is None:
        ImageDraw.Draw(mask).ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)
    else:
        points = outline(rng.uniform(-_ROTATION, _ROTATION))
        ImageDraw.Draw(mask).polygon([(cx + radius * x, cy + radius * y) for x, y in points], fill=255)
    colour = tuple(int(v) for v in rng.integers(*_FOREGROUND, 3))
    canvas.paste(Image.new("RGB", (size, size), colour), (0, 0), mask.resize((size, size), Image.Resampling.BOX))
    pixels = np.asarray(canvas, dtype=np.float32) + rng.normal(0, _NOISE, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A dark colour with a linear gradient in a random direction, plus noise."""
    start = rng.integers(*_BACKGROUND, 3).astype(np.float32)
    change = rng.uniform(-_GRADIENT, _GRADIENT, 3).astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    coords = np.linspace(0, 1, size, dtype=np.float32)
    xx, yy = np.meshgrid(coords, coords)
    t = (xx * math.cos(angle) + yy * math.sin(angle))[..., None]
    image = start + change * t + rng.normal(0, _NOISE, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)

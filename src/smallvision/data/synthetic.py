"""A generated, offline image dataset: one folder per class, the class being a shape.

The only class cue is the outline of the shape: its colour, size, position and rotation,
the background (a random two-colour gradient with noise) and distractor lines are drawn at
random for every image, whatever the class. A small convnet needs a few epochs to learn it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from smallvision.errors import ConfigError

_SUPERSAMPLE = 4  # draw large, then downscale: smooth edges like a photo, no aliasing cue
_JPEG_QUALITY = 90
_COPIES = (3, 7)  # copies of the shape per image
_RADIUS = (0.08, 0.16)  # of the image size


def _polygon(corners: int, inner: float | None = None) -> Callable[[float], list[tuple[float, float]]]:
    """A unit shape with `corners` points (a star when `inner` gives the inner radius), rotated by `angle`."""

    def points(angle: float) -> list[tuple[float, float]]:
        n = corners * (2 if inner else 1)
        radii = [1.0 if (i % 2 == 0 or not inner) else inner for i in range(n)]
        return [(r * math.cos(angle + 2 * math.pi * i / n), r * math.sin(angle + 2 * math.pi * i / n)) for i, r in enumerate(radii)]

    return points


SHAPES: dict[str, Callable[[float], list[tuple[float, float]]] | None] = {
    "circle": None,  # drawn as an ellipse
    "square": _polygon(4),
    "triangle": _polygon(3),
    "pentagon": _polygon(5),
    "hexagon": _polygon(6),
    "star": _polygon(5, inner=0.45),
}


def generate(
    out_dir: Path,
    classes: Sequence[str] = ("circle", "square"),
    per_class: int = 80,
    image_size: int = 64,
    seed: int = 0,
) -> Path:
    """Write `per_class` JPEGs of image_size x image_size pixels to out_dir/<class>/; return out_dir."""
    classes = list(classes)
    unknown = [c for c in classes if c not in SHAPES]
    if unknown or len(classes) < 2 or len(set(classes)) != len(classes):
        raise ConfigError(
            f"data.synthetic.classes={classes}: need two or more distinct shapes from {sorted(SHAPES)}"
        )
    if int(per_class) < 1 or int(image_size) < 16:
        raise ConfigError(
            f"data.synthetic.per_class={per_class} must be >= 1 and data.synthetic.image_size={image_size} >= 16"
        )
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    for name in classes:
        (out_dir / name).mkdir(parents=True, exist_ok=True)
    # interleave classes so that every class sees the same stream of random backgrounds
    for index in range(int(per_class)):
        for name in classes:
            image = _draw(name, int(image_size), rng)
            image.save(out_dir / name / f"{name}_{index:04d}.jpg", quality=_JPEG_QUALITY)
    return out_dir


def _draw(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    background = _background(size, rng)
    canvas = Image.fromarray(background)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(0, 4))):  # distractors: thin lines of any colour
        draw.line(tuple(rng.uniform(0, size, 4)), fill=_colour(rng), width=int(rng.integers(1, 3)))

    # several copies of the shape: the cue is everywhere in the image, as texture is in a photo,
    # so a small convnet can learn it from few images; each copy drawn as a supersampled mask (smooth edges)
    big = size * _SUPERSAMPLE
    mean = background.reshape(-1, 3).mean(axis=0)
    outline = SHAPES[shape]
    for _ in range(int(rng.integers(_COPIES[0], _COPIES[1] + 1))):
        radius = rng.uniform(*_RADIUS) * big
        cx, cy = rng.uniform(radius, big - radius, 2)
        mask = Image.new("L", (big, big), 0)
        if outline is None:
            ImageDraw.Draw(mask).ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)
        else:
            angle = rng.uniform(0, 2 * math.pi)
            ImageDraw.Draw(mask).polygon([(cx + radius * x, cy + radius * y) for x, y in outline(angle)], fill=255)
        fill = Image.new("RGB", (size, size), _contrasting_colour(mean, rng))
        canvas.paste(fill, (0, 0), mask.resize((size, size), Image.Resampling.BOX))

    pixels = np.asarray(canvas, dtype=np.float32) + rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A two-colour linear gradient at a random angle plus coarse noise."""
    a, b = _colour(rng), _colour(rng)
    angle = rng.uniform(0, 2 * math.pi)
    coords = np.linspace(-1, 1, size)
    xx, yy = np.meshgrid(coords, coords)
    t = ((xx * math.cos(angle) + yy * math.sin(angle)) + 1.5) / 3.0
    image = np.asarray(a, np.float32) * (1 - t[..., None]) + np.asarray(b, np.float32) * t[..., None]
    cell = max(1, size // 16)  # blotches of a few pixels, whatever the image size
    coarse = rng.normal(0, 18, (size // cell + 1, size // cell + 1, 3)).repeat(cell, 0).repeat(cell, 1)[:size, :size]
    return np.clip(image + coarse, 0, 255).astype(np.uint8)


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))  # type: ignore[return-value]


def _contrasting_colour(mean: np.ndarray, rng: np.random.Generator, min_distance: float = 120.0) -> tuple[int, int, int]:
    """A random colour far enough from the background's mean colour for the shape to be visible."""
    while True:
        colour = _colour(rng)
        if float(np.linalg.norm(np.asarray(colour) - mean)) >= min_distance:
            return colour

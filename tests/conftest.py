"""Shared fixtures. Images are tiny and generated here: tests never need the network or real data."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# --------------------------------------------------------------------------- image trees (data layer)


def _noise_image(seed: int, size: tuple[int, int] = (24, 24)) -> Image.Image:
    """A random RGB image: a different `seed` gives different bytes (so no accidental duplicates)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture
def write_image() -> Callable[..., Path]:
    """write_image(path, seed=0, size=(24, 24), **save_options) -> path: a small noise image, format from the suffix."""

    def write(path: Path, seed: int = 0, size: tuple[int, int] = (24, 24), **save_options) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        image = _noise_image(seed, size)
        fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else None
        image.save(path, format=fmt, **save_options)
        return path

    return write


@pytest.fixture
def make_tree(write_image) -> Callable[..., Path]:
    """make_tree(root, {"Cat": 10, "Dog": 10}, seed=0) -> root: root/<class>/<i>.jpg, every image distinct."""

    def make(root: Path, per_class: dict[str, int], seed: int = 0) -> Path:
        for k, (label, count) in enumerate(per_class.items()):
            for i in range(count):
                write_image(Path(root) / label / f"{i}.jpg", seed=seed * 100_000 + k * 1000 + i)
        return Path(root)

    return make


@pytest.fixture
def write_png_bomb() -> Callable[..., Path]:
    """write_png_bomb(path, width=100_000, height=100_000) -> path: a tiny PNG whose header claims a huge size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def write(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
        header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
        body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
        Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + body)
        return Path(path)

    return write

"""Decode one image file into RGB, the same way for validation (split), caching and prediction.

Every foreseeable problem raises `BadImageError` with a short, stable `reason` string that
the split report shows next to the file ("empty file", "not an image", ...). A file is read whole only after its
size and its header (format, pixel count) pass, so an oversized or disguised file never fills the memory.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from smallvision.errors import DataError
from smallvision.files import special_file_kind

# Compared case-insensitively; everything else in a data tree is reported as "not an image".
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

# Pillow's own decompression-bomb threshold (about 89 megapixels). Pillow additionally refuses
# anything above twice its global limit while opening, whatever this parameter says.
DEFAULT_MAX_PIXELS = 89_478_485
DEFAULT_MAX_BYTES = 268_435_456  # data.max_image_bytes' default (conf/data/base.yaml): 256 MiB

_BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white, as a viewer shows them


class BadImageError(DataError):
    """An image file that cannot be used. `reason` is the short text shown in the split report."""

    def __init__(self, reason: str, path: Path | str | None = None) -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path is not None else reason)

    def __reduce__(self):  # keep reason and path when raised in a worker process
        return type(self), (self.reason, self.path)


def is_image_name(name: str) -> bool:
    """Whether a file name has one of IMAGE_EXTENSIONS (any letter case)."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def read_checked(
    path: Path | str, max_pixels: int | None = DEFAULT_MAX_PIXELS, max_bytes: float | None = DEFAULT_MAX_BYTES
) -> bytes:
    """The bytes of an image file, read only once its size (`max_bytes`) and header (`max_pixels`) pass."""
    path = Path(path)
    kind = special_file_kind(path)
    if kind:  # opening a FIFO blocks, reading a device never ends
        raise BadImageError(f"not a regular file ({kind})")
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if not size:
                raise BadImageError("empty file")
            if max_bytes is not None and size > max_bytes:
                raise BadImageError(f"too large ({size:,} bytes, limit {int(max_bytes):,}: data.max_image_bytes)")
            _open(fh, max_pixels)  # the header alone: format and pixel count
            fh.seek(0)
            return fh.read()
    except OSError as err:
        raise BadImageError(f"cannot be read ({err.strerror or err})") from err


def load_rgb(
    path: Path | str, max_pixels: int | None = DEFAULT_MAX_PIXELS, max_bytes: float | None = DEFAULT_MAX_BYTES
) -> Image.Image:
    """Fully decode `path` into an upright RGB image (EXIF orientation applied, first frame only)."""
    try:
        return decode_rgb(read_checked(path, max_pixels, max_bytes), max_pixels)
    except BadImageError as err:
        raise BadImageError(err.reason, path) from err


def load_resized(
    path: Path | str,
    size: int,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_bytes: float | None = DEFAULT_MAX_BYTES,
) -> np.ndarray:
    """`load_rgb`, then a bilinear resize to exactly size x size (aspect not kept, like Keras target_size)."""
    img = load_rgb(path, max_pixels, max_bytes).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def _open(source: IO[bytes], max_pixels: int | None) -> Image.Image:
    """Open an image lazily (its header only) and check its pixel count. Raises BadImageError with a short reason."""
    with warnings.catch_warnings():
        # our own pixel limit below gives the reason; Pillow's warning would only add noise
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(source)
        except Image.DecompressionBombError as err:
            raise BadImageError("too large (decompression bomb)") from err
        except UnidentifiedImageError as err:
            raise BadImageError("not an image") from err
        except Exception as err:
            raise BadImageError("does not decode (truncated or corrupt)") from err
    if max_pixels is not None and img.width * img.height > max_pixels:
        raise BadImageError(f"too large ({img.width}x{img.height} pixels, limit {max_pixels})")
    return img


def decode_rgb(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode image bytes; see `load_rgb`. Raises BadImageError with a short reason."""
    if not data:
        raise BadImageError("empty file")
    # opened from memory, so there is no file handle to close (closing would also discard the pixels)
    img = _open(io.BytesIO(data), max_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img.seek(0)  # animated GIF/WebP/multi-page TIFF: the first frame
            img.load()
        except Exception as err:
            raise BadImageError("does not decode (truncated or corrupt)") from err
        return _to_rgb(_upright(img))


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag (in place: no copy). A broken EXIF block keeps the stored orientation."""
    with contextlib.suppress(Exception):  # malformed EXIF must not make a decodable photo unusable
        ImageOps.exif_transpose(img, in_place=True)
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: alpha composited on white, 16/32-bit and float scaled to 8 bits."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_to_uint8(np.asarray(img)), mode="L").convert("RGB")
    try:
        return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, ...
    except (ValueError, OSError) as err:
        raise BadImageError(f"unsupported colour mode {mode}") from err


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale a single-channel integer or float array to uint8 by its nominal range."""
    if arr.dtype.kind == "f":
        top = 1.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 255.0
        return np.clip(np.nan_to_num(arr) / top * 255.0, 0, 255).astype(np.uint8)
    if arr.dtype.itemsize == 1 or (arr.dtype.itemsize == 4 and int(arr.max(initial=0)) <= 255):
        return np.clip(arr, 0, 255).astype(np.uint8)  # 8-bit values stored in a wider type
    # 16-bit samples (Pillow's I;16 for 16-bit PNG/TIFF, or I holding them): keep the high byte
    return (np.clip(arr.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)

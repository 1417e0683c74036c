"""Decode one image file into RGB, the same way for validation (split), caching and prediction, and resize it
to a network's square input (`Resize`: squashed as Keras' target_size, or resized and centre-cropped as a
pretrained backbone was trained).

Every foreseeable problem raises `BadImageError` with a short, stable `reason` string that
the split report shows next to the file ("empty file", "not an image", ...). A file is read whole only after its
size and its header (format, pixel count) pass, so an oversized or disguised file never fills the memory.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from smallvision.errors import DataError
from smallvision.files import special_file_kind

# Compared case-insensitively; everything else in a data tree is reported as "not an image".
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


_BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white, as a viewer shows them


class BadImageError(DataError):
    """An image file that cannot be used. `reason` is the short text shown in the split report."""

    def __init__(self, reason: str, path: Path | str | None = None) -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path is not None else reason)

    def __reduce__(self):  # keep reason and path when raised in a worker process
        return type(self), (self.reason, self.path)


@dataclass(frozen=True)
class ImageLimits:
    """The largest image a stage reads (data.max_image_pixels and data.max_image_bytes): a larger one is a
    BadImageError "too large". `max_pixels` None: only Pillow's own limit (which refuses anything above twice its
    decompression-bomb threshold while opening); `max_bytes` None: no limit."""

    max_pixels: int | None
    max_bytes: int | float | None


def is_image_name(name: str) -> bool:
    """Whether a file name has one of IMAGE_EXTENSIONS (any letter case)."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def read_checked(path: Path | str, limits: ImageLimits) -> bytes:
    """The bytes of an image file, read only once its size and header pass `limits`."""
    max_bytes = limits.max_bytes
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
            _open(fh, limits.max_pixels)  # the header alone: format and pixel count
            fh.seek(0)
            return fh.read()
    except OSError as err:
        raise BadImageError(f"cannot be read ({err.strerror or err})") from err


def load_rgb(path: Path | str, limits: ImageLimits) -> Image.Image:
    """Fully decode `path` into an upright RGB image (EXIF orientation applied, first frame only)."""
    try:
        return decode_rgb(read_checked(path, limits), limits)
    except BadImageError as err:
        raise BadImageError(err.reason, path) from err


RESIZE_MODES = ("crop", "squash")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")


@dataclass(frozen=True)
class Resize:
    """How a decoded photo becomes a `size` x `size` network input.

    - ``squash``: the whole photo resized to the square, aspect not kept (Keras' target_size; the scratch convnet);
    - ``crop``: as timm's evaluation transform feeds a pretrained model: the shorter side resized to
      floor(size / crop_pct), aspect kept, then the centre size x size cut out.
    """

    size: int
    mode: str = "squash"
    crop_pct: float = 1.0
    interpolation: str = "bilinear"

    @property
    def tag(self) -> str:
        """What names this geometry in a cache file: `150px` for the book's bilinear squash, else every setting."""
        if self.mode == "squash" and self.interpolation == "bilinear":
            return f"{self.size}px"
        crop = f"-crop{self.crop_pct:g}" if self.mode == "crop" else "-squash"
        return f"{self.size}px{crop}-{self.interpolation}"

    def to_dict(self) -> dict:
        return asdict(self)

    def __call__(self, img: Image.Image) -> np.ndarray:
        """An RGB image -> the (size, size, 3) uint8 array."""
        return np.ascontiguousarray(_transform(self)(img).permute(1, 2, 0).numpy())


@functools.lru_cache(maxsize=16)
def _transform(resize: Resize):
    """timm's own evaluation geometry (no normalisation: it ends in a uint8 CHW tensor), so a backbone is fed exactly
    as timm feeds it; `squash` is timm's squash mode with nothing cropped."""
    from timm.data.transforms_factory import transforms_imagenet_eval  # timm is imported only by what resizes

    squash = resize.mode == "squash"
    return transforms_imagenet_eval(
        img_size=resize.size,
        crop_pct=1.0 if squash else resize.crop_pct,
        crop_mode="squash" if squash else "center",
        interpolation=resize.interpolation,
        use_prefetcher=True,
    )


def as_resize(size: int | Resize) -> Resize:
    """A plain size means the book's resize: squashed to a square, bilinear (Keras' target_size)."""
    return size if isinstance(size, Resize) else Resize(int(size))


def load_resized(path: Path | str, size: int | Resize, limits: ImageLimits) -> np.ndarray:
    """`load_rgb`, then `size` (a `Resize`, or a plain size: squashed bilinearly, as Keras' target_size)."""
    return as_resize(size)(load_rgb(path, limits))


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


def decode_rgb(data: bytes, limits: ImageLimits) -> Image.Image:
    """Decode image bytes; see `load_rgb`. Raises BadImageError with a short reason."""
    if not data:
        raise BadImageError("empty file")
    # opened from memory, so there is no file handle to close (closing would also discard the pixels)
    img = _open(io.BytesIO(data), limits.max_pixels)
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

"""Batched random affine augmentation with the semantics of Keras 2.0's ImageDataGenerator.

Keras transforms one image at a time on the CPU with ``scipy.ndimage.affine_transform``.
Here the same per-image transforms are drawn for a whole batch, their matrices are built
exactly as Keras builds them, and the batch is resampled with one ``F.affine_grid`` +
``F.grid_sample`` call on whatever device holds the batch (CPU or GPU).

Conventions copied from Keras (``random_transform`` / ``apply_affine_transform``):

- Coordinates are (row, col) = (y, x); a matrix maps OUTPUT pixel coordinates to INPUT
  pixel coordinates (the scipy convention) and is applied about the image centre.
- ``tx`` shifts rows (drawn from ``height_shift_range * height``), ``ty`` shifts columns
  (``width_shift_range * width``); ``zx`` scales rows and ``zy`` columns.
- Rotation and shear are uniform in radians (Keras 2.0: ``shear_range`` is in radians; the
  rotation range is given in degrees and converted), the two zoom factors are drawn
  independently in ``[1 - zoom_range, 1 + zoom_range]``.
- The horizontal flip (probability 0.5) comes after the affine transform.

One deliberate difference: the centre is the centre of the pixel grid, ``(size - 1) / 2``,
as in keras-preprocessing >= 1.1. Keras 2.0 used ``size / 2 + 0.5``, one pixel off, which
only adds a sub-pixel to one-pixel translation to every transform.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from smallvision.schema_techniques import Augmentation

# Keras fill_mode -> grid_sample padding_mode. "constant" samples with "border" and then
# overwrites every output pixel whose source lies outside the image with cval (see _fill_constant).
_PADDING_MODES = {"nearest": "border", "reflect": "reflection", "constant": "border"}
_INTERPOLATIONS = ("bilinear", "nearest")
# Tolerance (in pixels) for "the source point lies inside the image" in constant fill mode:
# float32 grid coordinates of an exact edge pixel can land a hair outside it.
_INSIDE_TOLERANCE_PX = 1e-4
_RANGE_KEYS = ("rotation_range", "width_shift_range", "height_shift_range", "shear_range", "zoom_range")


@dataclass(frozen=True)
class AffineConfig:
    """The transforms of the ``augmentation`` config group: Keras ImageDataGenerator's geometric arguments (the
    defaults: no transform).

    ``interpolation`` is "bilinear" (keras-preprocessing's default, scipy order=1) or
    "nearest" (what Keras 2.0's ``apply_transform`` used: scipy order=0).
    """

    rotation_range: float = 0.0  # degrees: theta ~ U[-r, r]
    width_shift_range: float = 0.0  # fraction of the width
    height_shift_range: float = 0.0  # fraction of the height
    shear_range: float = 0.0  # radians (Keras 2.0 semantics)
    zoom_range: float = 0.0  # zx, zy ~ U[1 - z, 1 + z], independently
    horizontal_flip: bool = False
    fill_mode: str = "nearest"  # nearest | constant | reflect
    cval: float = 0.0  # fill value for fill_mode=constant, in the input's units (0..255 for uint8)
    interpolation: str = "bilinear"  # bilinear | nearest

    @classmethod
    def of(cls, settings: Augmentation) -> AffineConfig:
        """The transforms of the `augmentation` settings (their bounds: `smallvision.schema_techniques.Augmentation`)."""
        return cls(**settings.model_dump())

    @property
    def is_geometric_identity(self) -> bool:
        """True when every affine range is zero (a flip may still apply)."""
        return all(getattr(self, key) == 0 for key in _RANGE_KEYS)

    @property
    def is_identity(self) -> bool:
        """True when augmentation leaves every image unchanged."""
        return self.is_geometric_identity and not self.horizontal_flip


def sample_params(
    n: int,
    cfg: AffineConfig,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    """Draw ``n`` independent Keras transforms.

    Returns float32 tensors of shape (n,): ``theta`` and ``shear`` in radians, ``tx`` (rows)
    and ``ty`` (columns) in pixels, zoom factors ``zx`` (rows) and ``zy`` (columns), and a
    bool ``flip``. Random numbers are drawn on the generator's device (so a CPU generator
    gives the same transforms for a CPU or a GPU batch) and moved to ``device``.
    """
    draw_device = generator.device if generator is not None else device
    u = torch.rand(n, 7, generator=generator, device=draw_device).to(device)
    signed = 2 * u[:, :6] - 1  # U[-1, 1], one column per continuous parameter
    return {
        "theta": signed[:, 0] * math.radians(cfg.rotation_range),
        "tx": signed[:, 1] * (cfg.height_shift_range * height),
        "ty": signed[:, 2] * (cfg.width_shift_range * width),
        "shear": signed[:, 3] * cfg.shear_range,
        "zx": 1 + signed[:, 4] * cfg.zoom_range,
        "zy": 1 + signed[:, 5] * cfg.zoom_range,
        "flip": (u[:, 6] < 0.5) if cfg.horizontal_flip else torch.zeros(n, dtype=torch.bool, device=u.device),
    }


def _matrices(a: Tensor, b: Tensor, c: Tensor, d: Tensor, e: Tensor, f: Tensor) -> Tensor:
    """Stack per-sample entries into (n, 3, 3) matrices [[a, b, c], [d, e, f], [0, 0, 1]]."""
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([a, b, c, d, e, f, zero, zero, one], dim=-1).view(-1, 3, 3)


def affine_matrices(params: Mapping[str, Tensor], height: int, width: int) -> Tensor:
    """Keras' (n, 3, 3) transform matrices: (row, col, 1) of an output pixel -> input pixel.

    Composed as in Keras, ``rotation @ shift @ shear @ zoom``, then moved to act about the
    centre of the pixel grid (``transform_matrix_offset_center``). The flip is not part of it.
    """
    theta, shear = params["theta"], params["shear"]
    one, zero = torch.ones_like(theta), torch.zeros_like(theta)
    cos, sin = torch.cos(theta), torch.sin(theta)
    rotation = _matrices(cos, -sin, zero, sin, cos, zero)
    shift = _matrices(one, zero, params["tx"], zero, one, params["ty"])
    shearing = _matrices(one, -torch.sin(shear), zero, zero, torch.cos(shear), zero)
    zoom = _matrices(params["zx"], zero, zero, zero, params["zy"], zero)
    o_row, o_col = (height - 1) / 2, (width - 1) / 2
    offset = _matrices(one, zero, one * o_row, zero, one, one * o_col)
    reset = _matrices(one, zero, -o_row * one, zero, one, -o_col * one)
    return offset @ rotation @ shift @ shearing @ zoom @ reset


def _grid_theta(matrices: Tensor, flip: Tensor, height: int, width: int) -> Tensor:
    """Convert Keras pixel matrices to ``affine_grid`` thetas (n, 2, 3), flip folded in.

    With ``align_corners=False`` a normalised coordinate u in [-1, 1] is the pixel coordinate
    ``p = size / 2 * u + (size - 1) / 2``, so pixel centres sample exactly and "reflection"
    mirrors about the image edge like scipy's "reflect". affine_grid orders coordinates
    (x, y) = (col, row), the reverse of Keras, hence the permutation.
    """
    one = torch.ones_like(flip, dtype=matrices.dtype)
    zero = torch.zeros_like(one)
    # (y_norm, x_norm, 1) -> (row, col, 1) and its inverse
    half_h, half_w, o_row, o_col = height / 2, width / 2, (height - 1) / 2, (width - 1) / 2
    to_pixel = _matrices(one * half_h, zero, one * o_row, zero, one * half_w, one * o_col)
    to_norm = _matrices(one / half_h, zero, one * (-o_row / half_h), zero, one / half_w, one * (-o_col / half_w))
    swap = _matrices(zero, one, zero, one, zero, zero)  # (row, col) <-> (x, y)
    # A horizontal flip after the transform reads output column x from column -x.
    mirror = _matrices(torch.where(flip, -one, one), zero, zero, zero, one, zero)
    theta = swap @ to_norm @ matrices @ to_pixel @ swap @ mirror
    return theta[:, :2, :]


def _affine_grid(theta: Tensor, height: int, width: int) -> Tensor:
    """Same as ``F.affine_grid(theta, (n, 1, H, W), align_corners=False)``, by broadcasting.

    The grid is separable in x and y, so two outer sums replace affine_grid's per-pixel
    matrix product (about 20x faster on CPU).
    """

    def centres(size: int) -> Tensor:  # normalised coordinates of the pixel centres
        return (torch.arange(size, device=theta.device, dtype=theta.dtype) * 2 + 1) / size - 1

    xs, ys = centres(width).view(1, 1, width), centres(height).view(1, height, 1)
    t = theta.unsqueeze(-1).unsqueeze(-1)  # (n, 2, 3, 1, 1)
    grid = torch.empty(theta.shape[0], height, width, 2, device=theta.device, dtype=theta.dtype)
    for k in range(2):  # k = 0: x, k = 1: y; written in place, no stack copy
        torch.add(t[:, k, 0] * xs, t[:, k, 1] * ys + t[:, k, 2], out=grid[..., k])
    return grid


def _inside(grid: Tensor, height: int, width: int) -> Tensor:
    """(n, 1, H, W) mask: the source point of each output pixel lies within the input image."""
    col = (grid[..., 0] + 1) * (width / 2) - 0.5
    row = (grid[..., 1] + 1) * (height / 2) - 0.5
    tol = _INSIDE_TOLERANCE_PX
    inside = (col >= -tol) & (col <= width - 1 + tol) & (row >= -tol) & (row <= height - 1 + tol)
    return inside.unsqueeze(1)


def _to_input_dtype(y: Tensor, dtype: torch.dtype) -> Tensor:
    """Cast back. No clamp is needed for integers: bilinear and nearest sampling only form
    convex combinations of input pixels (and the fill value, clamped into range by the caller)."""
    return y.to(dtype) if dtype.is_floating_point else y.round_().to(dtype)


def _check_batch(x: Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"expected a batch of images shaped (N, C, H, W); got shape {tuple(x.shape)}")
    if x.dtype == torch.bool or x.dtype.is_complex:
        raise TypeError(f"expected a float or integer image tensor; got dtype {x.dtype}")


def apply_affine(
    x: Tensor,
    params: Mapping[str, Tensor],
    fill_mode: str = "nearest",
    cval: float = 0.0,
    interpolation: str = "bilinear",
) -> Tensor:
    """Apply the given per-sample transforms (from :func:`sample_params`) to a batch.

    ``x`` is (N, C, H, W), float or integer, on any device; the result has the same shape,
    dtype and device. The work is done in float32; integer input is rounded back. ``flip``
    may be left out of ``params`` (no flip).
    """
    _check_batch(x)
    if fill_mode not in _PADDING_MODES:
        raise ValueError(f"fill_mode must be one of {', '.join(_PADDING_MODES)}; got {fill_mode!r}")
    n, _, height, width = x.shape
    params = {k: v.to(x.device) for k, v in params.items()}
    matrices = affine_matrices({k: v.float() for k, v in params.items() if k != "flip"}, height, width)
    flip = params.get("flip", torch.zeros(n, dtype=torch.bool, device=x.device)).bool()
    theta = _grid_theta(matrices, flip, height, width)
    grid = _affine_grid(theta, height, width)
    y = F.grid_sample(x.float(), grid, mode=interpolation, padding_mode=_PADDING_MODES[fill_mode], align_corners=False)
    if fill_mode == "constant":
        if not x.dtype.is_floating_point:
            cval = min(max(cval, torch.iinfo(x.dtype).min), torch.iinfo(x.dtype).max)
        y = torch.where(_inside(grid, height, width), y, torch.as_tensor(cval, dtype=y.dtype, device=y.device))
    return _to_input_dtype(y, x.dtype)


def random_affine(x: Tensor, cfg: AffineConfig, generator: torch.Generator | None = None) -> Tensor:
    """Augment a batch (N, C, H, W) with one independent random Keras transform per image.

    Same shape, dtype and device as ``x``. An identity config returns ``x`` itself; a
    flip-only config flips without resampling, so pixels stay bit-exact.
    """
    _check_batch(x)
    if cfg.is_identity:
        return x
    n, _, height, width = x.shape
    params = sample_params(n, cfg, height, width, generator=generator, device=x.device)
    if cfg.is_geometric_identity:
        return torch.where(params["flip"].view(n, 1, 1, 1), x.flip(-1), x)
    return apply_affine(x, params, fill_mode=cfg.fill_mode, cval=cfg.cval, interpolation=cfg.interpolation)

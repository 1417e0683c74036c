"""Augmentation preview: one training image and random augmentations of it under the configured transforms (the
`augmentation` group's, or a technique's own)."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from smallvision.data.augmentation import AffineConfig, random_affine
from smallvision.visualize.plotting import blank_axes, grid_shape, new_figure, show_image, wrapped


def augmented_copies(image: np.ndarray, cfg: AffineConfig, count: int, seed: int = 0) -> np.ndarray:
    """`count` independent random augmentations of one uint8 HWC image, as training draws them."""
    batch = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0).repeat(count, 1, 1, 1)
    out = random_affine(batch, cfg, generator=torch.Generator().manual_seed(seed))
    return out.permute(0, 2, 3, 1).numpy()


def describe(cfg: AffineConfig) -> str:
    """The transforms in one line, as Keras' ImageDataGenerator arguments."""
    if cfg.is_identity:
        return "no augmentation (identity)"
    parts = [
        f"{k}={getattr(cfg, k):g}"
        for k in ("rotation_range", "width_shift_range", "height_shift_range", "shear_range", "zoom_range")
        if getattr(cfg, k)
    ]
    if cfg.horizontal_flip:
        parts.append("horizontal_flip")
    parts.append(f"fill={cfg.fill_mode}")
    return ", ".join(parts)


def augmentation_figure(
    image: np.ndarray,
    copies: np.ndarray,
    cfg: AffineConfig,
    columns: int,
    name: str = "",
    panel: float = 2.2,
    technique: str = "",
) -> Figure:
    """The original first, then each augmented copy; the title lists the transforms (and names `technique` when
    they are that technique's own)."""
    rows, cols = grid_shape(len(copies) + 1, columns)
    fig = new_figure(panel * cols, panel * 1.1 * rows + 0.9)
    whose = f" ({technique})" if technique else ""
    fig.suptitle(wrapped(f"Augmentation preview{whose}: {describe(cfg)}", panel * cols, 12), fontsize=12)
    axes = fig.subplots(rows, cols, squeeze=False).flat
    for k, ax in enumerate(axes):
        if k == 0:
            show_image(ax, image, f"original{': ' + name if name else ''}", fontsize=9)
        elif k <= len(copies):
            show_image(ax, copies[k - 1], f"augmented #{k}", fontsize=9)
        else:
            blank_axes(ax)
    return fig

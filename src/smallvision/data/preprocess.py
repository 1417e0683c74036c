"""How photos become a network's input: the resize geometry a pretrained backbone was trained with (`backbone_resize`,
from timm's pretrained config), and decoded uint8 images to (pixels - 255 * mean) / (255 * std), channels first.

The one place this arithmetic lives: training (after augmentation), feature extraction, prediction and the
report's figures all call it, so a network always sees its input the way it was trained.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import timm
import torch
from timm.data import resolve_data_config
from torch import Tensor

from smallvision.data.images import Resize
from smallvision.schema import Backbone


def backbone_resize(backbone: Backbone, image_size: int) -> Resize:
    """How photos are resized for a pretrained backbone at `image_size`: `backbone.resize` (crop: as it was trained;
    squash: Keras' target_size), with `backbone.crop_pct` and `backbone.interpolation`, each taken from timm's
    pretrained config of `backbone.timm_name` when null (EfficientNet-Lite0: crop 0.875, bicubic)."""
    pretrained = timm.models.get_pretrained_cfg(backbone.timm_name)
    timm_cfg = resolve_data_config({}, pretrained_cfg=pretrained.to_dict() if pretrained else {})
    return Resize(
        image_size,
        backbone.resize,
        crop_pct=backbone.crop_pct or timm_cfg["crop_pct"],
        interpolation=backbone.interpolation or timm_cfg["interpolation"],
    )


def to_pixels(images: Tensor) -> Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) on the 0-255 scale."""
    return images.permute(0, 3, 1, 2).float()


def normalise(pixels: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Float (N, 3, H, W) pixels on the 0-255 scale -> (pixels / 255 - mean) / std, per channel."""
    m = torch.tensor(mean, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1) * 255
    s = torch.tensor(std, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1) * 255
    return (pixels - m) / s


def network_input(
    images: Tensor | np.ndarray, mean: Sequence[float], std: Sequence[float], channels_last: bool = False
) -> Tensor:
    """uint8 (N, H, W, 3) images (a tensor, or an array that is copied) -> the normalised network input."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.array(images, dtype=np.uint8))  # a writable copy for torch.from_numpy
    x = normalise(to_pixels(images), mean, std)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x

"""How photos become a network's input: the resize geometry and the normalisation a pretrained backbone was trained
with (`backbone_resize`, `backbone_normalisation`: the config's values, or timm's pretrained config where null), and
decoded uint8 images to (pixels - 255 * mean) / (255 * std), channels first.

The one place this arithmetic lives: training (after augmentation), feature extraction, prediction and the
report's figures all call it, so a network always sees its input the way it was trained.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from smallvision.data.images import Resize
from smallvision.schema import Backbone


def timm_data_config(timm_name: str) -> dict:
    """timm's input settings (input_size, interpolation, mean, std, crop_pct, crop_mode) for `timm_name`'s default
    pretrained weights, timm's generic defaults for a model it has none for."""
    import timm  # here: a from-scratch stage starts without it
    from timm.data import resolve_data_config

    pretrained = timm.models.get_pretrained_cfg(timm_name)
    return resolve_data_config({}, pretrained_cfg=pretrained.to_dict() if pretrained else {})


def backbone_normalisation(backbone: Backbone) -> tuple[list[float], list[float]]:
    """The per-channel mean and std (0-1 scale) a pretrained backbone's input is normalised with: `backbone.mean` and
    `backbone.std`, each taken from timm's pretrained config of `backbone.timm_name` when null (EfficientNet-Lite:
    0.5 and 0.5; VGG16 and ResNet-50: ImageNet's 0.485/0.456/0.406 and 0.229/0.224/0.225)."""
    mean, std = backbone.mean, backbone.std
    if mean is None or std is None:
        timm_cfg = timm_data_config(backbone.timm_name)
        mean = timm_cfg["mean"] if mean is None else mean
        std = timm_cfg["std"] if std is None else std
    return [float(v) for v in mean], [float(v) for v in std]


def backbone_resize(backbone: Backbone, image_size: int) -> Resize:
    """How photos are resized for a pretrained backbone at `image_size`: `backbone.resize` (crop: as it was trained;
    squash: Keras' target_size), with `backbone.crop_pct` and `backbone.interpolation`, each taken from timm's
    pretrained config of `backbone.timm_name` when null (EfficientNet-Lite0: crop 0.875, bicubic)."""
    timm_cfg = timm_data_config(backbone.timm_name)
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

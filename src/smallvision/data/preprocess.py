"""How decoded uint8 images become a network's input: (pixels - 255 * mean) / (255 * std), channels first.

The one place this arithmetic lives: training (after augmentation), feature extraction, prediction and the
report's figures all call it, so a network always sees its input the way it was trained.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


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

"""The small convnet of the book (Deep Learning with Python, chapter 5)."""

from __future__ import annotations

import pytest
import torch
from helpers.study import (
    config,
)

from smallvision.errors import ConfigError
from smallvision.models.convnet import SmallConvNet


def test_small_convnet_matches_the_book():
    assert sum(p.numel() for p in SmallConvNet(150, 1).parameters()) == 3_453_121
    assert SmallConvNet(150, 3)(torch.zeros(2, 3, 150, 150)).shape == (2, 3)
    with pytest.raises(ConfigError, match="too small for the small convnet"):
        config("techniques.baseline.image_size=32")

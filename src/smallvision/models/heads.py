"""Dense heads on top of a pretrained conv base, and the base + head network."""

from __future__ import annotations

import torch
from torch import nn

from smallvision.models.convnet import keras_init_


class DenseHead(nn.Module):
    """Dense(units, ReLU) + Dropout + Dense(num_outputs): the book's classifier on VGG16 features."""

    def __init__(self, in_features: int, units: int = 256, dropout: float = 0.5, num_outputs: int = 1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, units),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(units, num_outputs),
        )
        keras_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransferNet(nn.Module):
    """Pretrained conv base -> pooled features -> dense head. `pool` is "avg" or "flatten"."""

    def __init__(self, base: nn.Module, head: DenseHead, pool: str) -> None:
        super().__init__()
        self.base = base
        self.head = head
        self.pool = pool

    def features(self, x: torch.Tensor) -> torch.Tensor:
        from smallvision.models.backbones import extract_features, pool_features

        return pool_features(extract_features(self.base, x), self.pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

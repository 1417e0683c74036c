"""The book's dense head on a conv base's pooled features, and the base + head network."""

from __future__ import annotations

import torch
from torch import nn

from smallvision.models.heads import DenseHead, TransferNet


class ConvBase(nn.Module):
    """A conv base as timm's: forward_features gives the (N, C, h, w) map."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_the_head_is_dense_relu_dropout_dense_with_keras_initialisation():
    head = DenseHead(12, units=8, dropout=0.25, num_outputs=3)
    kinds = [type(m) for m in head.net]
    assert kinds == [nn.Flatten, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert (head.net[1].in_features, head.net[1].out_features, head.net[4].out_features) == (12, 8, 3)
    assert head.net[3].p == 0.25
    assert all(torch.count_nonzero(m.bias) == 0 for m in (head.net[1], head.net[4]))  # Keras' zero biases
    assert head(torch.randn(5, 12)).shape == (5, 3)


def test_the_network_is_the_head_on_the_bases_pooled_features():
    torch.manual_seed(0)
    base, x = ConvBase(), torch.randn(2, 3, 9, 9)  # a 4 x 4 x 4 map
    fmap = base.forward_features(x)
    avg = TransferNet(base, DenseHead(4, units=5, dropout=0.0), "avg").eval()
    assert torch.equal(avg.features(x), fmap.mean(dim=(2, 3)))
    assert torch.equal(avg(x), avg.head(fmap.mean(dim=(2, 3))))
    flat = TransferNet(base, DenseHead(64, units=5, dropout=0.0), "flatten").eval()
    assert torch.equal(flat.features(x), fmap.flatten(1)) and flat(x).shape == (2, 1)

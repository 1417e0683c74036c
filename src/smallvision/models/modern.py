"""A "mini Xception" trained from scratch (Chollet, Deep Learning with Python, 2nd ed., section 9.3.4): a convnet with
today's building blocks (batch normalisation, depthwise separable convolutions, residual connections, global
average pooling) in place of the book's 2017 convnet (`smallvision.models.convnet`).

    stem: Conv k x k (no bias, stride s), the first width
    per width w:  BN - ReLU - SepConv3x3(w) - BN - ReLU - SepConv3x3(w) - MaxPool 3/2   (the main branch)
                  + Conv1x1 stride 2 (w, no bias) of the block's input                   (the residual projection)
    head: global average pooling - Dropout - Linear
"""

from __future__ import annotations

import torch
from torch import nn


def separable_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Keras' SeparableConv2D(out_channels, 3, padding="same", use_bias=False): a 3x3 depthwise conv, then a 1x1
    pointwise conv that mixes the channels."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
    )


class ResidualBlock(nn.Module):
    """Two pre-activated convs and a 3/2 max pool, plus a strided 1x1 projection of the input: the output has
    `out_channels` channels at half the resolution (rounded up). Its forward output is the sum, so a hook on the
    block reads the block's output (the figures' layers)."""

    def __init__(self, in_channels: int, out_channels: int, separable: bool) -> None:
        super().__init__()

        def conv(cin: int) -> nn.Module:
            return separable_conv(cin, out_channels) if separable else nn.Conv2d(cin, out_channels, 3, 1, 1, bias=False)

        self.main = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(),
            conv(in_channels),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            conv(out_channels),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.residual = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.residual(x)


class ModernConvNet(nn.Module):
    """Stem, one residual block per width in `widths`, global average pooling, dropout, logits.

    `num_outputs` is 1 for two classes (one logit + sigmoid) or C for C > 2 classes (softmax), as the small
    convnet. Any input size works (global pooling); each block halves it.
    """

    def __init__(
        self,
        widths: list[int],
        separable: bool,
        stem_kernel: int,
        stem_stride: int,
        dropout: float,
        num_outputs: int,
    ) -> None:
        super().__init__()
        # the stem has the first block's width, as the book's (Conv2D(32, 5) before the 32-wide block)
        # stride 2 (the book: 1) quarters the cost of the first block, the dearest on a CPU
        self.stem = nn.Conv2d(3, widths[0], stem_kernel, stride=stem_stride, padding=stem_kernel // 2, bias=False)
        blocks, channels = [], widths[0]
        for width in widths:
            blocks.append(ResidualBlock(channels, width, separable))
            channels = width
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, num_outputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.blocks(self.stem(x)))

    def conv_layers(self) -> list[tuple[str, nn.Module]]:
        """The stem and each block's output (after the residual add), in order, for the activation, filter and
        patch figures."""
        return [("stem", self.stem), *((f"block_{i}", b) for i, b in enumerate(self.blocks, 1))]

    def gradcam_layer(self) -> nn.Module:
        """The last block: the deepest feature map that keeps spatial layout (before global pooling)."""
        return self.blocks[-1]

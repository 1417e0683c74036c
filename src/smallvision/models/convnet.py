"""The book's small convnet (Chollet, listing 5.5), optionally with dropout after Flatten (listing 5.13)."""

from __future__ import annotations

import torch
from torch import nn

from smallvision.models.convnet_sizes import DENSE_UNITS, FILTERS, flatten_size


def keras_init_(module: nn.Module) -> None:
    """Keras defaults: glorot_uniform kernels, zero biases (PyTorch's default init differs)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


class SmallConvNet(nn.Module):
    """4 x (Conv3x3 + ReLU + MaxPool2) with 32/64/128/128 filters, Flatten, [Dropout], Dense 512, output logits.

    `num_outputs` is 1 for two classes (one logit + sigmoid, as the book) or C for C > 2 classes (softmax).
    At 150 px with one output it has exactly 3,453,121 parameters, as the Keras summary in the book.
    """

    def __init__(self, image_size: int = 150, num_outputs: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for filters in FILTERS:
            layers += [nn.Conv2d(in_ch, filters, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            in_ch = filters
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(flatten_size(image_size), DENSE_UNITS),
            nn.ReLU(inplace=True),
            nn.Linear(DENSE_UNITS, num_outputs),
        )
        keras_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def conv_layers(self) -> list[tuple[str, nn.Module]]:
        """Named conv (after its ReLU) and pool layers in order, Keras-style names, for activation figures."""
        named, convs, pools = [], 0, 0
        for m in self.features:
            if isinstance(m, nn.ReLU):
                convs += 1
                named.append((f"conv2d_{convs}", m))
            elif isinstance(m, nn.MaxPool2d):
                pools += 1
                named.append((f"max_pooling2d_{pools}", m))
        return named

    def gradcam_layer(self) -> nn.Module:
        """The last conv layer: the deepest feature map that keeps spatial layout."""
        return [m for m in self.features if isinstance(m, nn.Conv2d)][-1]

"""What the networks learned: filter patterns really excite their filter, Grad-CAM points at the evidence."""

from __future__ import annotations

import numpy as np
import torch

from smallvision.models.convnet import SmallConvNet
from smallvision.visualize.filters import filter_patterns
from smallvision.visualize.gradcam import gradcam_maps

SIZE = 96


def test_gradient_ascent_increases_the_filters_activation():
    torch.manual_seed(0)
    net = SmallConvNet(SIZE, 1).eval()
    layer = net.conv_layers()[2]  # conv2d_2
    patterns = filter_patterns(net, layer, [0, 1, 2, 3], image_size=SIZE, mean=[0, 0, 0], std=[1, 1, 1],
                               steps=10, step_size=2.0, noise=20.0, seed=0)
    alive = [p for p in patterns if not p.dead]
    assert alive, "every filter dead on a fresh network"
    for p in alive:
        assert p.final > p.start
        assert p.image.shape == (SIZE, SIZE, 3) and p.image.dtype == np.uint8


def _evidence_images(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images; class 1 has a bright square somewhere in the top-left quadrant, class 0 does not."""
    x = rng.uniform(0, 0.4, (n, 3, SIZE, SIZE)).astype(np.float32)
    y = rng.integers(0, 2, n)
    for i in np.flatnonzero(y):
        r, c = rng.integers(4, SIZE // 2 - 16, 2)
        x[i, :, r:r + 12, c:c + 12] = 1.0
    return torch.from_numpy(x), torch.from_numpy(y)


def test_gradcam_puts_its_maximum_where_the_class_evidence_is():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = SmallConvNet(SIZE, 1)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(40):
        x, y = _evidence_images(32, rng)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x)[:, 0], y.float())
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    x, y = _evidence_images(64, rng)
    with torch.no_grad():
        accuracy = ((net(x)[:, 0] > 0).long() == y).float().mean()
    assert accuracy > 0.9, f"the tiny net did not learn the evidence ({accuracy:.2f})"
    positives = x[y == 1][:8]
    maps = gradcam_maps(net, net.gradcam_layer(), positives, [1] * len(positives))
    assert maps.shape == (len(positives), SIZE, SIZE)
    for heatmap in maps:
        r, c = np.unravel_index(np.argmax(heatmap), heatmap.shape)
        assert r < SIZE // 2 + 8 and c < SIZE // 2 + 8   # the top-left quadrant (+ one cell of CAM blur)

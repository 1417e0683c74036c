"""First-layer kernels (smallvision.visualize.kernels), drawn beside the initialisation training started from."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.figures import (
    assert_not_blank,
    draw_figure,
    flat_text,
    image_panels,
    tiny_net,
)
from helpers.study import config, make_dataset, paths

from smallvision import techniques
from smallvision.networks import build_net, load_checkpoint
from smallvision.runs import CHECKPOINT
from smallvision.training import train_technique
from smallvision.visualize import (
    kernels,
    sections_learned,
)

# --------------------------------------------------------------------------- first-layer kernels


def test_kernel_tiles_are_normalised_per_kernel_and_drawn_beside_the_initialisation():
    trained, initial = tiny_net(1), tiny_net(2)
    with torch.no_grad():
        trained.features[0].weight[5] = 0.25  # a constant kernel: mid-grey
    name, conv = kernels.first_conv(trained)
    assert name == "features.0" and conv is trained.features[0]
    tiles = kernels.kernel_tiles(conv.weight)
    assert tiles.shape == (32, 3, 3, 3)
    for i, tile in enumerate(tiles):
        if i == 5:
            assert np.allclose(tile, 0.5)
        else:
            assert tile.min() == 0.0 and np.isclose(tile.max(), 1.0)
    sets = [
        kernels.KernelSet("after training (tiny)", conv.weight),
        kernels.KernelSet("initialisation (seed 2, as training began)", kernels.first_conv(initial)[1].weight),
    ]
    fig = kernels.kernels_figure(sets, "First-layer kernels of tiny (features.0)", columns=8)
    pixels = draw_figure(fig)
    panels = image_panels(fig)
    assert len(panels) == 2
    assert [flat_text(ax.get_title()) for ax in panels] == [
        "after training (tiny): 32 kernels 3x3",
        "initialisation (seed 2, as training began): 32 kernels 3x3",
    ]
    for ax in panels:
        assert ax.images[0].get_array().shape == (4 * 4 + 1, 8 * 4 + 1, 3)  # 4 x 8 tiles of 3 px, 1 px apart
        assert_not_blank(pixels, ax)
    assert kernels.moved(conv.weight * 1.1, conv.weight) == "moved 10 % of its initial norm"
    with pytest.raises(ValueError, match="RGB kernels"):
        kernels.kernel_tiles(torch.zeros(4, 1, 3, 3))


def test_the_scratch_initialisation_is_the_one_training_started_from(tmp_path, monkeypatch):
    started = {}

    def recording(spec, pretrained=True):
        net = build_net(spec, pretrained)
        started.setdefault("weight", kernels.first_conv(net)[1].weight.detach().clone())
        return net

    monkeypatch.setattr(techniques.networks, "build_net", recording)
    root = make_dataset(tmp_path, per_class=8)
    cfg = config("technique=baseline", "seed=7", "techniques.baseline.epochs=1")
    train_technique(cfg, paths(root, "baseline"), progress=False)
    spec = load_checkpoint(paths(root, "baseline").out / CHECKPOINT)[1]
    rebuilt = kernels.first_conv(sections_learned.scratch_initialisation(spec, 7))[1].weight
    assert torch.equal(rebuilt, started["weight"])

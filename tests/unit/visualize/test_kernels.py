"""First-layer kernels (smallvision.visualize.kernels), drawn beside the initialisation training started from (which
is rebuilt: test_sections_learned.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.figures import assert_not_blank, draw_figure, flat_text, image_panels, tiny_net

from smallvision.visualize import kernels

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

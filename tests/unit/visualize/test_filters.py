"""Filter patterns (smallvision.visualize.filters): gradient ascent really excites its filter, and the figure has a
panel per filter and labels a dead layer."""

from __future__ import annotations

import re

import numpy as np
import torch
from helpers.figures import (
    TINY,
    assert_not_blank,
    flat_text,
    image_panels,
    timed_build,
    tiny_net,
)

from smallvision.models.convnet import SmallConvNet
from smallvision.visualize import filters
from smallvision.visualize.filters import target_patterns
from smallvision.visualize.layers import filter_layers

SIZE = 96


def test_gradient_ascent_increases_the_filters_activation():
    torch.manual_seed(0)
    net = SmallConvNet(SIZE, 1).eval()
    name, module = net.conv_layers()[2]  # conv2d_2
    patterns = target_patterns(
        net,
        [(name, module, i) for i in range(4)],
        image_size=SIZE,
        mean=[0, 0, 0],
        std=[1, 1, 1],
        steps=10,
        step_size=2.0,
        noise=20.0,
        seed=0,
    )
    alive = [p for p in patterns if not p.dead]
    assert alive, "every filter dead on a fresh network"
    for p in alive:
        assert p.final > p.start
        assert p.image.shape == (SIZE, SIZE, 3) and p.image.dtype == np.uint8


def test_filters_figure_has_one_panel_per_filter_and_labels_a_dead_layer():
    net = tiny_net()
    with torch.no_grad():
        net.features[0].bias.fill_(1.0)  # conv2d_1 responds everywhere: every filter gets a gradient
        net.features[3].weight.zero_()  # conv2d_2 is dead: no gradient reaches the input from it
        net.features[3].bias.zero_()
    chosen = filter_layers(net, ["conv2d_1", "conv2d_2"], "visualize.filters.scratch_layers")
    patterns = {
        name: filters.target_patterns(
            net,
            [(name, module, i) for i in range(5)],
            image_size=TINY,
            mean=[0, 0, 0],
            std=[1, 1, 1],
            steps=3,
            step_size=2.0,
            noise=20.0,
            seed=0,
        )
        for name, module in chosen
    }
    assert not any(p.dead for p in patterns["conv2d_1"])
    assert all(p.dead for p in patterns["conv2d_2"])
    fig, pixels = timed_build(
        "filters_figure", lambda: filters.filters_figure(patterns, "Filter patterns of tiny", columns=4)
    )

    assert fig.get_suptitle() == "Filter patterns of tiny"
    assert [flat_text(sub.get_suptitle()) for sub in fig.subfigs] == [
        "layer conv2d_1",
        "layer conv2d_2 (5 of 5 dead: no gradient reaches the input)",
    ]
    for sub, (name, shown) in zip(fig.subfigs, patterns.items()):
        panels = [ax for ax in sub.axes if ax.images]
        assert len(panels) == 5 and len(sub.axes) == 8  # 5 filters in a 2 x 4 grid, 3 empty cells
        for ax, p in zip(panels, shown):
            if p.dead:
                assert ax.get_title() == f"#{p.index} dead"
                assert ax.title.get_color() == "firebrick"
            else:
                assert re.fullmatch(rf"#{p.index}: \S+ -> \S+", ax.get_title()), ax.get_title()
                assert p.final > p.start
            assert np.array_equal(ax.images[0].get_array(), p.image)
            assert_not_blank(pixels, ax)
    assert len(image_panels(fig)) == 10

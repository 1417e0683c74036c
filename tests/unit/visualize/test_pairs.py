"""Filter/feature pairs (smallvision.visualize.pairs): each layer's strongest channel's pattern beside its map."""

from __future__ import annotations

import numpy as np
from helpers.figures import (
    TINY,
    assert_not_blank,
    draw_figure,
    image_panels,
    tiny_net,
    tiny_scene,
    tiny_tensor,
)

from smallvision.visualize import (
    activations,
    filters,
    pairs,
)
from smallvision.visualize.layers import depth_layers

# --------------------------------------------------------------------------- filter / feature pairs


def test_pairs_figure_shows_each_layers_strongest_channel_pattern_beside_its_map():
    net = tiny_net()
    image = tiny_scene(5)
    layers = depth_layers(net)
    maps = activations.capture(net, tiny_tensor(image[None]), layers)
    features = [maps[name][0].numpy() for name, _ in layers]
    channels = [pairs.strongest_channel(feature) for feature in features]
    for feature, channel in zip(features, channels):
        assert feature[channel].mean() == feature.mean(axis=(1, 2)).max()
    # one batch for every layer's channel: each image climbs its own layer's objective
    found = filters.target_patterns(
        net,
        [(name, module, c) for (name, module), c in zip(layers, channels)],
        image_size=TINY,
        mean=[0] * 3,
        std=[1] * 3,
        steps=3,
        step_size=2.0,
        noise=20.0,
    )
    assert [(p.layer, p.index) for p in found] == [(name, c) for (name, _), c in zip(layers, channels)]
    assert all(p.final > p.start for p in found if not p.dead)
    shown = [pairs.Pair(p.layer, p, feature[p.index]) for p, feature in zip(found, features)]
    fig = pairs.pairs_figure(image, shown, "Filters and features of tiny on test image test/cat/0.jpg (cat)")
    pixels = draw_figure(fig)
    panels = image_panels(fig)
    assert len(panels) == 3 * len(layers)
    for k, p in enumerate(shown):
        pattern_ax, map_ax, overlay_ax = panels[3 * k : 3 * k + 3]
        assert pattern_ax.get_title() == f"{p.layer} #{p.pattern.index}: pattern"
        h, w = p.feature.shape
        assert map_ax.get_title() == f"its map on the image ({w}x{h})"
        assert np.array_equal(map_ax.images[0].get_array(), p.feature)
        assert overlay_ax.images[0].get_array().shape == image.shape
        for ax in (pattern_ax, map_ax, overlay_ax):
            assert_not_blank(pixels, ax)

"""The activation figure (smallvision.visualize.activations): the input, then one labelled mosaic per layer."""

from __future__ import annotations

import numpy as np
import torch
from helpers.figures import (
    TINY,
    assert_not_blank,
    draw_figure,
    image_panels,
    panel_pixels,
    timed_build,
    tiny_net,
    tiny_scene,
    tiny_tensor,
)
from matplotlib.colors import to_rgb

from smallvision.visualize import activations
from smallvision.visualize.layers import activation_layers


def test_activation_figure_has_the_input_then_one_labelled_mosaic_per_layer():
    net = tiny_net()
    with torch.no_grad():  # filters 0-3 of conv2d_1 are dead: zero kernels, zero bias -> ReLU output 0 everywhere
        net.features[0].weight[:4] = 0
        net.features[0].bias[:4] = 0
    image = tiny_scene(1)
    layers = activation_layers(net)
    names = [name for name, _ in layers]
    assert names == [f"{kind}_{i}" for i in range(1, 5) for kind in ("conv2d", "max_pooling2d")]
    acts = activations.layer_activations(net, tiny_tensor(image[None]), layers, max_channels=16)
    fig, pixels = timed_build(
        "activation_figure", lambda: activations.activation_figure(image, acts, "Activations of tiny", columns=8)
    )

    panels = image_panels(fig)
    assert len(panels) == 1 + len(layers)
    assert panels[0].get_title() == f"input ({TINY}x{TINY} px)"
    assert np.array_equal(panels[0].images[0].get_array(), image)
    assert fig.get_suptitle() == "Activations of tiny"
    for ax, (name, _), act in zip(panels[1:], layers, acts):
        title = ax.get_title(loc="left")
        assert title.startswith(f"{name}: 16 of {act.channels} channels, "), title
        _, h, w = act.maps.shape
        assert f", {w}x{h}" in title
        assert (f"; {len(act.blank)} blank on this image (grey)" in title) == bool(act.blank)
    assert_not_blank(pixels, panels[0])
    for ax, act in zip(panels[1:], acts):
        if len(act.blank) < len(act.maps):
            assert_not_blank(pixels, ax)
        else:  # every shown channel constant: the title says so (above) and the mosaic is drawn grey, not black
            assert np.allclose(panel_pixels(pixels, ax).mean(axis=(0, 1)), 255 * 0.75, atol=3)

    # the dead filters are labelled, drawn grey (the colour map's "bad" colour), never as black squares
    conv1 = acts[0]
    assert conv1.blank[:4] == [0, 1, 2, 3]
    assert "4 blank on this image (grey)" in panels[1].get_title(loc="left")
    mosaic = panels[1].images[0].get_array()
    tile = mosaic.shape[1] // 8
    assert np.ma.getmaskarray(mosaic)[: conv1.maps.shape[1], : 4 * tile].all()  # NaN tiles are masked
    assert tuple(panels[1].images[0].get_cmap().get_bad()[:3]) == to_rgb("0.75")


def test_activation_figure_of_a_fully_dead_layer_says_every_channel_is_blank():
    net = tiny_net()
    with torch.no_grad():  # conv2d_2 all zero: it and every layer after it are constant on any image
        net.features[3].weight.zero_()
        net.features[3].bias.zero_()
    image = tiny_scene(2)
    layers = activation_layers(net)
    acts = activations.layer_activations(net, tiny_tensor(image[None]), layers, max_channels=8)
    fig = activations.activation_figure(image, acts, "dead", columns=8)
    draw_figure(fig)
    panels = image_panels(fig)
    titles = [ax.get_title(loc="left") for ax in panels[1:]]
    assert "blank" not in titles[0] and "blank" not in titles[1]  # conv2d_1, max_pooling2d_1 alive
    for title in titles[2:]:
        assert "8 blank on this image (grey)" in title, title

"""Top-activating patches (smallvision.visualize.patches) are the channel's maxima over the images, cut to the
receptive field a hand computation gives."""

from __future__ import annotations

import numpy as np
import torch
from helpers.figures import (
    TINY,
    assert_not_blank,
    draw_figure,
    flat_text,
    image_panels,
    tiny_net,
    tiny_scene,
    tiny_tensor,
)

from smallvision.visualize import (
    activations,
    patches,
)
from smallvision.visualize.layers import depth_layers
from smallvision.visualize.receptive import layer_geometry

# --------------------------------------------------------------------------- top-activating patches


def _planted(count: int, where: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Dark noise images; image where[0] has a white 3 x 3 block with its corner at (where[1], where[2])."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (count, TINY, TINY, 3)).astype(np.uint8)
    i, r, c = where
    images[i, r : r + 3, c : c + 3] = 255
    return images


def test_the_top_patch_is_the_channels_argmax_over_all_images():
    net = tiny_net()
    with torch.no_grad():  # conv2d_1 channel 0 sums its 3 x 3 x 3 field: the white block is its one strongest spot
        net.features[0].weight[0] = 1.0
        net.features[0].bias[0] = 0.0
    images = _planted(23, (13, 30, 41))
    layers = depth_layers(net)[:3]
    batches = [tiny_tensor(images[i : i + 5]) for i in range(0, len(images), 5)]  # five batches: the top-k is merged
    tops = patches.top_activations(net, layers, batches, k=9)

    top = tops["conv2d_1"]
    assert (int(top.images[0, 0]), int(top.rows[0, 0]), int(top.cols[0, 0])) == (13, 30, 41)
    geometry = layer_geometry(net, layers, TINY)
    assert (patches.crop(images[13], geometry["conv2d_1"], 30, 41) == 255).all()  # the planted block, exactly
    # every channel of every layer: the top-9 are the 9 largest per-image maxima (ties: the earlier image), and
    # each sits at its image's argmax
    maps = activations.capture(net, tiny_tensor(images), layers)
    for name, _ in layers:
        full = maps[name].numpy()
        n, c, h, w = full.shape
        flat = full.reshape(n, c, h * w)
        for ch in range(c):
            best = flat[:, ch].max(axis=1)
            expected = sorted(range(n), key=lambda i: (-best[i], i))[:9]
            assert top_list(tops[name].images[ch]) == expected, (name, ch)
            assert np.allclose(tops[name].values[ch].numpy(), best[expected])
            where = flat[expected, ch].argmax(axis=1)
            assert top_list(tops[name].rows[ch]) == list(where // w) and top_list(tops[name].cols[ch]) == list(
                where % w
            )


def test_only_the_given_region_of_a_map_is_ranked():
    net = tiny_net()
    with torch.no_grad():
        net.features[0].weight[0] = 1.0
        net.features[0].bias[0] = 0.0
    images = _planted(6, (3, 30, 41))
    layers = depth_layers(net)[:1]
    region = (slice(2, 20), slice(5, 25))
    top = patches.top_activations(net, layers, [tiny_tensor(images)], k=3, regions={"conv2d_1": region})["conv2d_1"]
    full = activations.capture(net, tiny_tensor(images), layers)["conv2d_1"][:, 0, 2:20, 5:25].numpy()
    best = full.reshape(6, -1).max(axis=1)
    assert top_list(top.images[0]) == sorted(range(6), key=lambda i: (-best[i], i))[:3]  # the planted block is outside
    i = int(top.images[0, 0])
    r, c = np.unravel_index(full[i].argmax(), full[i].shape)
    assert (int(top.rows[0, 0]), int(top.cols[0, 0])) == (r + 2, c + 5)  # positions of the whole map


def top_list(t: torch.Tensor) -> list[int]:
    return [int(v) for v in t]


def test_patches_figure_has_a_mosaic_per_channel_and_labels_a_silent_one():
    net = tiny_net()
    with torch.no_grad():
        net.features[0].bias[2] = -1e3  # conv2d_1 channel 2 never fires
    images = np.stack([tiny_scene(40 + i) for i in range(12)])
    layers = depth_layers(net)[:2]
    tops = patches.top_activations(net, layers, [tiny_tensor(images)], k=9)
    geometry = layer_geometry(net, layers, TINY)
    shown = [patches.layer_patches(n, tops[n], [0, 1, 2, 3, 4], geometry[n], images.__getitem__) for n, _ in layers]
    assert shown[0].channels[2].silent and not shown[0].channels[0].silent
    assert shown[1].channels[0].patches[0].shape == (8, 8, 3)  # conv2d_2's 8 px field
    fig = patches.patches_figure(shown, "Top-activating patches of tiny", TINY, columns=3)
    pixels = draw_figure(fig)

    assert fig.get_suptitle() == "Top-activating patches of tiny"
    assert [flat_text(sub.get_suptitle()) for sub in fig.subfigs] == [
        "layer conv2d_1: receptive field 3 px, stride 1 px",
        "layer conv2d_2: receptive field 8 px, stride 2 px",
    ]
    panels = image_panels(fig)
    assert len(panels) == 9  # 5 channels per layer, the silent one without a picture
    assert [ax.get_title().split(":")[0] for ax in panels] == ["#0", "#1", "#3", "#4", "#0", "#1", "#2", "#3", "#4"]
    # a 3 x 3 mosaic of each layer's own field (3 px, then 8 px) with a 1 px gap between patches
    assert [ax.images[0].get_array().shape[:2] for ax in panels] == [(3 * 3 + 2,) * 2] * 4 + [(3 * 8 + 2,) * 2] * 5
    for ax in panels:
        assert_not_blank(pixels, ax)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts == ["#2: never above 0"]

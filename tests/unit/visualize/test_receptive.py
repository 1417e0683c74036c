"""Receptive fields (smallvision.visualize.receptive): the hand-computed ones, and the probe finds EfficientNet's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smallvision.models import backbones
from smallvision.models.convnet import SmallConvNet
from smallvision.visualize import (
    patches,
)
from smallvision.visualize.layers import depth_layers
from smallvision.visualize.receptive import Geometry, chain_geometry, layer_geometry, probed_geometry

# --------------------------------------------------------------------------- receptive fields


def test_the_small_convnets_receptive_fields_are_the_hand_computed_ones():
    # conv3x3 valid: size += 2 * jump; pool2: size += jump, jump *= 2; nothing is padded, so offset stays 0
    # conv2d_1: 3, jump 1 | pool: 4, 2 | conv2d_2: 4 + 2*2 = 8 | pool: 10, 4 | conv2d_3: 10 + 2*4 = 18 | pool: 22, 8
    # conv2d_4: 22 + 2*8 = 38, jump 8
    net = SmallConvNet(96)
    layers = depth_layers(net)
    assert [name for name, _ in layers] == ["conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4"]
    hand = {
        "conv2d_1": Geometry(3, 1, 0),
        "conv2d_2": Geometry(8, 2, 0),
        "conv2d_3": Geometry(18, 4, 0),
        "conv2d_4": Geometry(38, 8, 0),
    }
    assert layer_geometry(net, layers, 96) == hand  # the chain arithmetic
    assert probed_geometry(net, layers, 96) == hand  # the gradient probe agrees on the same network
    # padding moves the field's start before the image: a 3x3 conv with padding 1 starts at -1, and after a pool
    # and a second padded conv at -1 - 1 * 2 = -3
    padded = [torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.MaxPool2d(2), torch.nn.Conv2d(4, 4, 3, padding=1)]
    assert chain_geometry(padded) == [Geometry(3, 1, -1), Geometry(4, 2, -1), Geometry(8, 2, -3)]
    with pytest.raises(TypeError, match="probed_geometry"):
        chain_geometry([torch.nn.Linear(3, 3)])


def test_a_patch_is_the_receptive_field_the_hand_computation_gives():
    rows, cols = np.mgrid[0:96, 0:96]
    image = np.stack([rows, cols, np.zeros_like(rows)], axis=-1).astype(np.uint8)  # each pixel names its place
    # conv2d_4, position (2, 3): input rows 8*2 .. 8*2 + 38, columns 8*3 .. 8*3 + 38
    patch = patches.crop(image, Geometry(38, 8, 0), 2, 3)
    assert np.array_equal(patch, image[16:54, 24:62])
    # padding: row 0's field starts 3 px before the image, column 1's at -3 + 2 = -1; the field keeps its place
    # in the square, grey where it lies outside the image
    edge = patches.crop(image, Geometry(8, 2, -3), 0, 1)
    assert edge.shape == (8, 8, 3)
    assert (edge[:3] == patches.GREY).all() and (edge[:, 0] == patches.GREY).all()
    assert np.array_equal(edge[3:, 1:], image[0:5, 0:7])
    # a field wider than the image: the whole image
    assert np.array_equal(patches.crop(image, Geometry(288, 32, 0, exact=False), 1, 1), image)
    # the positions whose field lies inside the image: conv2d_4's 8 x 8 map at 96 px, all of them (the last starts
    # at 56 and ends at 94); with 3 px of padding and jump 2 in a 20 px image, positions 2 (field 1-9) to 7 (11-19)
    assert Geometry(38, 8, 0).interior(96) == slice(0, 8)
    assert Geometry(8, 2, -3).interior(20) == slice(2, 8)
    assert Geometry(30, 2, -3).interior(20) == Geometry(288, 32, 0, exact=False).interior(96) == slice(None)


def test_the_probe_finds_efficientnets_strides_and_fields():
    base = backbones.create_backbone(
        {"timm_name": "tf_efficientnet_lite0", "image_size": 96, "weights": {"source": "none"}}, allow_random=True
    )
    layers = [(info["module"], base.get_submodule(info["module"])) for info in base.feature_info]
    found = probed_geometry(base, layers, 96)
    # by hand: stem 3x3 s2 -> 3 (jump 2); blocks.0 dw3x3 -> 3 + 2*2 = 7; blocks.1 dw3x3 s2 then dw3x3 -> 19
    # (jump 4); blocks.2 two dw5x5 -> 19 + 4*4 + 4*8 = 67 (jump 8); blocks.4 is 339 px, wider than 3 x 96
    assert [found[n].size for n in ("blocks.0", "blocks.1", "blocks.2")] == [7, 19, 67]
    for info in base.feature_info[:3]:
        assert found[info["module"]].jump == info["reduction"]  # timm's own stride of each stage
    assert not found["blocks.4"].exact and not found["blocks.6"].exact
    assert found["blocks.0"].offset == -2  # TensorFlow "same" padding: the stem pads after, the 3x3 dw before

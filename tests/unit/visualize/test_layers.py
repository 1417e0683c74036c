"""Which layers of a trained network each figure reads, by name (the small convnet: Keras' layer names)."""

from __future__ import annotations

import pytest
from helpers.figures import tiny_net
from torch import nn

from smallvision.errors import ConfigError
from smallvision.visualize.layers import activation_layers, cam_layer, chosen_layers, depth_layers, filter_layers

CONVS = ["conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4"]


def names(layers) -> list[str]:
    return [name for name, _ in layers]


def test_each_figure_reads_the_layers_of_the_small_convnet_it_shows():
    net = tiny_net()
    assert names(activation_layers(net)) == [n for i in range(1, 5) for n in (f"conv2d_{i}", f"max_pooling2d_{i}")]
    assert names(filter_layers(net, None, "visualize.filters.layers")) == CONVS == names(depth_layers(net))
    name, layer = cam_layer(net)  # the ReLU after the last conv: its in-place output is what Grad-CAM reads
    assert name == "conv2d_4" and isinstance(layer, nn.ReLU)
    assert dict(activation_layers(net))["conv2d_4"] is layer


def test_chosen_layers_come_in_the_order_the_network_runs_them():
    net = tiny_net()
    chosen = chosen_layers(net, ["conv2d_3", "conv2d_1"], "visualize.activations.layers")
    assert names(chosen) == ["conv2d_1", "conv2d_3"]
    assert chosen == filter_layers(net, ["conv2d_1", "conv2d_3"], "visualize.activations.layers")
    assert names(chosen_layers(net, None, "visualize.activations.layers")) == CONVS


def test_an_unknown_layer_names_the_option_and_the_layers_there_are():
    with pytest.raises(ConfigError, match=r"^visualize\.filters\.layers=\['conv9'\]: no layer named 'conv9' in "):
        filter_layers(tiny_net(), ["conv9"], "visualize.filters.layers")
    with pytest.raises(TypeError, match="expected a SmallConvNet, ModernConvNet or TransferNet, got Linear"):
        activation_layers(nn.Linear(2, 2))

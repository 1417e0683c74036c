"""Which layers of a trained network each figure reads, by name, for both kinds of network.

Scratch nets (SmallConvNet) name their layers the Keras way (conv2d_1 ... max_pooling2d_4); the modern convnet
(ModernConvNet) names its stem and blocks (stem, block_1, ...: each block's output, after the residual add); transfer
nets (TransferNet) use the timm module names of their conv base (blocks.0, blocks.6, bn2, ...).
"""

from __future__ import annotations

from torch import nn

from smallvision.errors import ConfigError
from smallvision.models import backbones
from smallvision.models.convnet import SmallConvNet
from smallvision.models.heads import TransferNet
from smallvision.models.modern import ModernConvNet


def _check(net: nn.Module) -> None:
    if not isinstance(net, (SmallConvNet, ModernConvNet, TransferNet)):
        raise TypeError(f"expected a SmallConvNet, ModernConvNet or TransferNet, got {type(net).__name__}")


def activation_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every conv (after its ReLU) and pool layer of a scratch net; the first, middle and last stage of a base."""
    _check(net)
    if isinstance(net, (SmallConvNet, ModernConvNet)):
        return net.conv_layers()
    return backbones.stage_layers(net.base)


def filter_layers(net: nn.Module, names: list[str] | None, option: str) -> list[tuple[str, nn.Module]]:
    """The layers whose filters are visualised: `names` (None: every conv layer of a scratch net, the
    first/middle/last stage of a base). `option` is the config key, for the error message."""
    _check(net)
    if isinstance(net, SmallConvNet):
        available = [(name, m) for name, m in net.conv_layers() if name.startswith("conv2d_")]
    elif isinstance(net, ModernConvNet):
        available = net.conv_layers()
    else:
        available = list(net.base.named_modules())[1:]
        if names is None:
            return backbones.stage_layers(net.base)
    if names is None:
        return available
    lookup = dict(available)
    unknown = [name for name in names if name not in lookup]
    if unknown:
        hint = ", ".join(name for name, _ in available[:12]) + (", ..." if len(available) > 12 else "")
        raise ConfigError(
            f"{option}={list(names)}: no layer named {', '.join(map(repr, unknown))} in "
            f"{type(net).__name__}; choose among {hint} (or null for the default layers)"
        )
    return [(name, lookup[name]) for name in names]


def cam_layer(net: nn.Module) -> tuple[str, nn.Module]:
    """The feature map Grad-CAM reads: the last activated conv map.

    For the scratch net that is the ReLU after `gradcam_layer()` (Keras' conv2d_4 output), not the Conv2d
    itself: its in-place ReLU rewrites the conv output, so hooks on the Conv2d would pair post-ReLU
    activations (on CPU, shared storage) with pre-ReLU gradients, and pre-ReLU activations on a GPU.
    """
    _check(net)
    if isinstance(net, SmallConvNet):
        conv = net.gradcam_layer()
        layers = list(net.features)
        after = layers[layers.index(conv) + 1]
        name = {id(m): n for n, m in net.conv_layers()}.get(id(after), "features")
        return name, after if isinstance(after, nn.ReLU) else conv
    if isinstance(net, ModernConvNet):
        return net.conv_layers()[-1]
    layer = backbones.gradcam_layer(net.base)
    name = next((n for n, m in net.base.named_modules() if m is layer), type(layer).__name__)
    return name, layer


def depth_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """Layers from first to last, for the pictures that go deeper: every conv layer of a scratch net (after its
    ReLU); every stage a base exposes in timm's `feature_info` (the outputs at each reduction), else its first,
    middle and last stage."""
    _check(net)
    if isinstance(net, SmallConvNet):
        return [(name, m) for name, m in net.conv_layers() if name.startswith("conv2d_")]
    if isinstance(net, ModernConvNet):
        return net.conv_layers()
    names = [info["module"] for info in getattr(net.base, "feature_info", None) or []]
    found = dict(net.base.named_modules())
    if names and all(name in found for name in names):
        return [(name, found[name]) for name in names]
    return backbones.stage_layers(net.base)


def chosen_layers(net: nn.Module, names: list[str] | None, option: str) -> list[tuple[str, nn.Module]]:
    """`names` of `net` checked as for the filter figures (`option`: the config key), or `depth_layers` if None;
    in the order the network runs them (modules registered in forward order, as in every network here)."""
    if names is None:
        return depth_layers(net)
    order = {id(m): i for i, m in enumerate(net.modules())}
    return sorted(filter_layers(net, names, option), key=lambda layer: order[id(layer[1])])

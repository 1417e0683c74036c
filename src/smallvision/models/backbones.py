"""Pretrained conv bases through timm: creation with offline weights (`smallvision.models.weights`), features,
freezing, and the structure fine-tuning and the report read (blocks, layers from stem to top, Grad-CAM layer).

A backbone is `timm.create_model(backbone.timm_name, pretrained=False, num_classes=0)` plus the weight source
`backbone.weights.source` (package, file, hub, or none: random weights only when the caller allows it).

Modules that ``forward_features`` never runs (VGG's 120 M-parameter fully connected classifier) are
dropped from every backbone, whatever its source: the study only uses the conv feature map, such weights
would otherwise sit there random, and the structure stays the same for a checkpoint to load into.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from smallvision.errors import ConfigError
from smallvision.models import weights as W

POOLS = ("avg", "flatten")
# Side of the zero image that finds which modules forward_features calls: which ones does not depend on
# the size, and a small probe keeps creation fast (an internal detail, not a user setting).
_PROBE_SIZE = 64


# ----------------------------------------------------------------------------------------------- creation


def create_backbone(cfg: Mapping, *, allow_random: bool = False, base_dir: str | Path | None = None) -> nn.Module:
    """The conv base named by `cfg` (the `backbone` config group as a dict) with its pretrained weights.

    Returned in eval mode. `base_dir` resolves a relative `weights.file` (None: as given). The loaded
    weights are described in the returned module's `weights_info` dict (source, path, tensors, ignored,
    dropped) for logging. Raises WeightsUnavailableError when the weights cannot be had offline and
    ConfigError for a bad name, source or a file that does not fit the architecture.
    """
    import timm  # here, as in the other functions that use it: a from-scratch stage starts without timm

    timm_name = cfg.get("timm_name")
    if not isinstance(timm_name, str) or not timm_name:
        raise ConfigError(
            f"backbone.timm_name must be a timm model name such as 'tf_efficientnet_lite0', got {timm_name!r}"
        )
    _check_timm_name(timm_name)
    weights = dict(cfg.get("weights") or {})
    source, match = W.check_source(weights, allow_random)
    path = W.weights_file(weights, timm_name, base_dir)  # a missing file fails before any model is built
    state = W.read_state_dict(path) if path is not None else None
    model = (
        W.from_hub(timm_name, weights)
        if source == "hub"
        else timm.create_model(timm_name, pretrained=False, num_classes=0)
    )
    image_size = int(cfg.get("image_size") or model.pretrained_cfg["input_size"][-1])
    info: dict = {"source": source, "dropped": _drop_unused_modules(model, min(image_size, _PROBE_SIZE))}
    if state is not None:
        mapped, ignored = W.map_state(state, model, match, path, timm_name)
        model.load_state_dict(mapped, strict=True)
        info.update(path=str(path), match=match, tensors=len(mapped), ignored=ignored)
    model.weights_info = info
    return model.eval()


def _check_timm_name(timm_name: str) -> None:
    import timm

    if timm.is_model(timm_name):
        return
    stem = re.split(r"[._\d]", timm_name)[0] or timm_name
    close = difflib.get_close_matches(timm_name, timm.list_models(), n=5)
    raise ConfigError(
        f"backbone.timm_name={timm_name!r} is not a timm model"
        + (f"; close names: {', '.join(close)}" if close else "")
        + f". List candidates with timm.list_models('*{stem}*')"
    )


def _drop_unused_modules(model: nn.Module, image_size: int) -> list[str]:
    """Replace by nn.Identity the modules with weights that `forward_features` never calls; return their names.

    The feature map is checked to be bit-for-bit the same afterwards; if it is not (a model that uses a
    module's tensors without calling it) nothing is dropped.
    """
    called: set[str] = set()
    hooks = [
        module.register_forward_hook(lambda *_, name=name: called.add(name)) for name, module in model.named_modules()
    ]
    try:
        before = _dummy_features(model, image_size)
    finally:
        for hook in hooks:
            hook.remove()
    dropped: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if name and name not in called and not any(name.startswith(d + ".") for d in dropped) and _has_tensors(module):
            dropped[name] = module
    for name in dropped:
        _set_submodule(model, name, nn.Identity())
    if dropped and not torch.equal(before, _dummy_features(model, image_size)):
        for name, module in dropped.items():
            _set_submodule(model, name, module)
        return []
    return list(dropped)


def _has_tensors(module: nn.Module) -> bool:
    return next(itertools.chain(module.parameters(), module.buffers()), None) is not None


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent), attr, module)


def _dummy_features(backbone: nn.Module, image_size: int) -> Tensor:
    """forward_features of one zero image in eval/no_grad; every module's train/eval flag is restored after."""
    modes = {module: module.training for module in backbone.modules()}
    tensor = next(itertools.chain(backbone.parameters(), backbone.buffers()))
    channels = getattr(backbone, "pretrained_cfg", {}).get("input_size", (3,))[0]
    x = torch.zeros(1, channels, image_size, image_size, device=tensor.device, dtype=tensor.dtype)
    backbone.eval()
    try:
        with torch.no_grad():
            return extract_features(backbone, x)
    except RuntimeError as err:  # e.g. pooling a map that has shrunk to nothing
        raise ConfigError(
            f"image_size={image_size} does not fit {type(backbone).__name__} ({W.error_reason(err)}): "
            "use the backbone's image_size or larger"
        ) from err
    finally:
        for module, mode in modes.items():
            module.training = mode


# ----------------------------------------------------------------------------------------------- features


def extract_features(backbone: nn.Module, x: Tensor) -> Tensor:
    """The conv feature map (N, C, h, w) of a batch of normalised images."""
    fmap = backbone.forward_features(x)
    if fmap.ndim != 4:
        raise ConfigError(
            f"{type(backbone).__name__}.forward_features gives shape {tuple(fmap.shape)}, not a conv "
            "feature map (N, C, h, w): choose a convolutional backbone.timm_name"
        )
    return fmap


def pool_features(fmap: Tensor, pool: str) -> Tensor:
    """'avg': global average, (N, C); 'flatten': the whole map, (N, C*h*w), as Keras' Flatten (in NCHW order)."""
    if pool == "avg":
        return fmap.mean(dim=(2, 3))
    if pool == "flatten":
        return fmap.flatten(1)
    raise ConfigError(f"pool={pool!r} (backbone.head_pool or the head's pool) is not one of {', '.join(POOLS)}")


def feature_dim(backbone: nn.Module, image_size: int, pool: str) -> int:
    """Length of one image's pooled features at `image_size`, from a dummy forward."""
    return pool_features(_dummy_features(backbone, image_size), pool).shape[1]


# ----------------------------------------------------------------------------------------------- freezing


def freeze(module: nn.Module) -> None:
    """No gradients for any parameter of `module`."""
    for param in module.parameters():
        param.requires_grad_(False)


def set_trainable(modules: Iterable[nn.Module]) -> None:
    """Gradients for every parameter of each module (e.g. the `top_blocks` that fine-tuning unfreezes)."""
    for module in modules:
        for param in module.parameters():
            param.requires_grad_(True)


def freeze_base(base: nn.Module, unfreeze_blocks: int | str = 0, batchnorm: str = "frozen") -> list[nn.Module]:
    """Freeze `base` except its top `unfreeze_blocks` blocks ("all": the whole base); return the modules to keep in
    eval mode after each `.train()`: every Dropout and DropPath of the base, and its BatchNorms as `batchnorm` says.

    - ``frozen``: every BatchNorm keeps the ImageNet statistics, also in the unfrozen top (whose affine weights
      do train): on 2,000 images re-estimating them usually hurts (the usual fine-tuning practice);
    - ``update``: the BatchNorms of the trainable part re-estimate their statistics on the new data while
      fine-tuning (train mode); those of the frozen part still never move.
    """
    from timm.layers import DropPath

    # modules whose behaviour in train() mode changes state or output: frozen parts keep them in eval()
    train_mode_sensitive = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd, DropPath)
    freeze(base)
    if unfreeze_blocks == "all":
        set_trainable([base])
    elif unfreeze_blocks:
        set_trainable(top_blocks(base, unfreeze_blocks))
    else:
        top_blocks(base, unfreeze_blocks)  # checks the value
    keep_eval = []
    for module in base.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            trainable = any(p.requires_grad for p in module.parameters())
            if batchnorm == "frozen" or not trainable:
                keep_eval.append(module)
        elif isinstance(module, train_mode_sensitive):
            keep_eval.append(module)
    for module in keep_eval:
        module.eval()
    return keep_eval


# ----------------------------------------------------------------------------------------------- structure


def _family(backbone: nn.Module) -> str:
    """Which layout the backbone has: 'vgg', 'efficientnet', 'resnet' or 'generic' (by structure, not class)."""
    features = getattr(backbone, "features", None)
    if isinstance(features, nn.Sequential) and any(isinstance(m, nn.MaxPool2d) for m in features):
        return "vgg"
    if isinstance(getattr(backbone, "blocks", None), nn.Sequential) and hasattr(backbone, "conv_head"):
        return "efficientnet"
    if all(hasattr(backbone, f"layer{i}") for i in range(1, 5)):
        return "resnet"
    return "generic"


def _vgg_blocks(features: nn.Sequential) -> list[list[nn.Module]]:
    """The convs of each block (a block = the convs between two max-pools), e.g. VGG16 block5 = [24, 26, 28]."""
    blocks: list[list[nn.Module]] = [[]]
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            blocks[-1].append(layer)
        elif isinstance(layer, nn.MaxPool2d) and blocks[-1]:
            blocks.append([])
    return [block for block in blocks if block]


def _layout(backbone: nn.Module) -> tuple[list[nn.Module], list[list[nn.Module]], list[nn.Module]]:
    """The base as stem, blocks (bottom to top, each a list of modules) and tail (after the last block).

    VGG: the convs of each conv block; EfficientNet: conv_stem/bn1, the stages of `blocks`, conv_head/bn2;
    ResNet: conv1/bn1, layer1..layer4; otherwise the children that have parameters, as blocks.
    """
    family = _family(backbone)

    def present(*names: str) -> list[nn.Module]:
        return [m for m in (getattr(backbone, n, None) for n in names) if m is not None and _has_tensors(m)]

    if family == "vgg":
        return [], _vgg_blocks(backbone.features), []
    if family == "efficientnet":
        return present("conv_stem", "bn1"), [[stage] for stage in backbone.blocks], present("conv_head", "bn2")
    if family == "resnet":
        return present("conv1", "bn1"), [[getattr(backbone, f"layer{i}")] for i in range(1, 5)], []
    return [], [[child] for child in backbone.children() if _has_tensors(child)], []


def top_blocks(backbone: nn.Module, n: int) -> list[nn.Module]:
    """The modules fine-tuning unfreezes: the top `n` blocks (n = 0: none), and the tail above them.

    VGG: the convs of the last n conv blocks; EfficientNet: the last n stages of `blocks` plus the final
    conv_head/bn2; ResNet: the last n of layer1..layer4; otherwise the last n children that have parameters.
    """
    _, blocks, tail = _layout(backbone)
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= len(blocks):
        raise ConfigError(
            f"unfreeze_blocks={n!r} (backbone.unfreeze_blocks or techniques.fine_tune.unfreeze_blocks) "
            f"must be a whole number from 0 to {len(blocks)}, the number of blocks of "
            f"{type(backbone).__name__}, or all (the whole base)"
        )
    if n == 0:
        return []
    return [module for block in blocks[len(blocks) - n :] for module in block] + tail


def layers_top_down(backbone: nn.Module) -> list[list[nn.Parameter]]:
    """The base's parameters by depth, top first: the tail, each block from the top down, the stem.

    Every parameter is in exactly one layer: one that the layout does not place (a model-specific extra) joins
    the bottom layer, the one that moves least under layer-wise learning rates.
    """
    stem, blocks, tail = _layout(backbone)
    layers = [tail, *reversed(blocks), stem]
    seen: set[int] = set()
    groups: list[list[nn.Parameter]] = []
    for modules in layers:
        params = [p for m in modules for p in m.parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            groups.append(params)
    rest = [p for p in backbone.parameters() if id(p) not in seen]
    if rest:
        groups[-1:] = [[*(groups[-1] if groups else []), *rest]]
    return groups


def gradcam_layer(backbone: nn.Module) -> nn.Module:
    """The last activated conv feature map, the layer Grad-CAM reads.

    EfficientNet: bn2 (BatchNorm + activation after conv_head, the map that is pooled); VGG: the ReLU after
    the last conv (block5_conv3's output, as in Keras, before the last pool); ResNet: layer4; otherwise the
    last Conv2d.
    """
    family = _family(backbone)
    if family == "efficientnet":
        bn2 = getattr(backbone, "bn2", None)
        return bn2 if bn2 is not None and _has_tensors(bn2) else backbone.conv_head
    if family == "vgg":
        layers = list(backbone.features)
        last_conv = max(i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d))
        after = layers[last_conv + 1] if last_conv + 1 < len(layers) else None
        return after if isinstance(after, (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU)) else layers[last_conv]
    if family == "resnet":
        return backbone.layer4
    convs = [m for m in backbone.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ConfigError(
            f"{type(backbone).__name__} has no Conv2d for Grad-CAM: choose a convolutional backbone.timm_name"
        )
    return convs[-1]


def stage_layers(backbone: nn.Module) -> list[tuple[str, nn.Module]]:
    """The first, middle and last stage outputs (name, module), for activation pictures.

    Uses timm's `feature_info` (the stage outputs timm exposes for feature pyramids), else the children
    that have parameters.
    """
    names = [info["module"] for info in getattr(backbone, "feature_info", None) or []]
    names = [name for name in names if _resolves(backbone, name)]
    if not names:
        names = [name for name, child in backbone.named_children() if _has_tensors(child)]
    if not names:
        raise ConfigError(f"{type(backbone).__name__} has no stages with parameters to visualise")
    picked = dict.fromkeys([names[0], names[(len(names) - 1) // 2], names[-1]])  # ordered, without repeats
    return [(name, backbone.get_submodule(name)) for name in picked]


def _resolves(backbone: nn.Module, name: str) -> bool:
    try:
        backbone.get_submodule(name)
    except AttributeError:
        return False
    return True

"""What each technique trains: one builder per network (`spec["network"]`, named after it; which network a
technique's `kind` trains: `smallvision.networks`) returns the network, the spec that rebuilds it, the inputs it
trains on (one row per manifest record) and the modules that stay frozen.

- scratch: the small convnet on decoded images (baseline, augment);
- modern: the mini Xception on decoded images (modern): built the same way as scratch, from its own spec;
- head: a dense head on features the frozen base computed once and cached (feature_extract, cached mode);
- transfer: a pretrained base with a dense head on images, the base frozen (feature_extract, augmented mode)
  or its top blocks (or all of it) trainable, starting from feature-extract's head (fine_tune).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
from torch import nn

from smallvision import networks
from smallvision.data.augmentation import AffineConfig
from smallvision.errors import ConfigError, DataError
from smallvision.features import FeatureExtractor, cached_features, features_key, features_path
from smallvision.models import backbones
from smallvision.models.heads import TransferNet
from smallvision.modules.classifier import ImageInput
from smallvision.schema import Backbone
from smallvision.schema_techniques import FeatureExtract, FineTune, Modern, Scratch


@dataclass
class Inputs:
    """What a builder starts from: the technique's and backbone's config, the classes, the decoded images (one
    row per manifest record), how images are augmented, and where cached features and the head to fine-tune are."""

    technique: Scratch | Modern | FeatureExtract | FineTune
    backbone: Backbone
    classes: list[str]
    images: np.ndarray
    augmentation: AffineConfig | None
    channels_last: bool
    trainer: L.Trainer  # runs the feature extraction (on every rank under DDP)
    features_dir: Path
    manifest_digest: str
    head_checkpoint: Path  # the feature-extract checkpoint fine-tune starts from


@dataclass
class Setup:
    """What training needs besides the data split: the network and its spec, its inputs (decoded images or
    cached features, one row per manifest record), how images become network input (None: features), the
    modules kept frozen (eval mode, no gradients), the parameters of the network as it predicts (base + head,
    also when only the head trains on cached features) and whether it starts from trained weights (fine-tune:
    feature-extract's head), which training then keeps unless an epoch beats them (`smallvision.starting_point`)."""

    net: nn.Module
    spec: dict
    array: np.ndarray
    image_input: ImageInput | None
    frozen: list[nn.Module]
    parameters: int
    trained_start: bool = False  # starts from trained weights (not only a pretrained base): its start is validated


def parameter_count(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def scratch(inp: Inputs) -> Setup:
    spec = networks.make_spec(inp.technique, inp.backbone, inp.classes)
    image_input = ImageInput(tuple(spec["mean"]), tuple(spec["std"]), inp.augmentation, inp.channels_last)
    net = networks.build_net(spec)
    return Setup(net, spec, inp.images, image_input, [], parameter_count(net))


def head(inp: Inputs) -> Setup:
    """The head alone, on features the frozen base computes once per manifest, size and precision (then cached).

    With `tta` or `cached_flips` the features of the horizontally flipped images are cached too, and each row holds
    both views, (N, 2, D): test-time augmentation averages them, `cached_flips` trains on either at random."""
    base, spec, views = base_features(
        inp, (False, True) if inp.technique.tta or inp.technique.cached_flips else (False,)
    )
    features = views[0] if len(views) == 1 else np.stack(views, axis=1)
    dense = networks.build_head(spec)
    return Setup(dense, spec, features, None, [], parameter_count(base) + parameter_count(dense))


def base_features(inp: Inputs, flips: tuple[bool, ...] = (False,)) -> tuple[nn.Module, dict, list[np.ndarray]]:
    """The frozen base, the head network's spec and the base's features of every image (one array per view in
    `flips`), from the feature cache when there, else extracted and cached: the head trains on them and the
    audit reads them, from the same cache file."""
    bb, tech = inp.backbone, inp.technique
    pool = tech.head.pool
    base = backbones.create_backbone(bb.model_dump())  # the record a network's spec carries
    spec = networks.make_spec(tech, bb, inp.classes, backbones.feature_dim(base, tech.image_size, pool))
    views = []
    for flip in flips:
        key = features_key(bb, networks.spec_resize(spec), pool, inp.manifest_digest, str(inp.trainer.precision), flip)
        extractor = FeatureExtractor(base, pool, spec["mean"], spec["std"], inp.channels_last, flip)
        path = features_path(inp.features_dir, bb.name, key)
        views.append(cached_features(inp.trainer, extractor, inp.images, path, tech.extract_batch_size))
    return base, spec, views


def transfer(inp: Inputs) -> Setup:
    """Base + head on images; fine-tune starts from feature-extract's head and unfreezes the base's top blocks."""
    bb, tech = inp.backbone, inp.technique
    pool = tech.head.pool
    base = backbones.create_backbone(bb.model_dump())  # the record a network's spec carries
    spec = networks.make_spec(tech, bb, inp.classes, backbones.feature_dim(base, tech.image_size, pool))
    net = TransferNet(base, networks.build_head(spec), pool)
    unfreeze, batchnorm = 0, "frozen"
    if isinstance(tech, FineTune):
        unfreeze, batchnorm = tech.unfreeze_blocks, tech.batchnorm
        try:
            net.head.load_state_dict(trained_head(inp.head_checkpoint, spec))
        except RuntimeError as err:  # its tensors' shapes or names do not fit this head (other classes, features)
            first = str(err).strip().splitlines()
            detail = f"{first[0]} {first[1].strip()}" if len(first) > 1 else (first or [""])[0]
            raise DataError(
                f"fine-tune's start {inp.head_checkpoint} does not fit its head ({detail[:200]}); "
                "rerun feature-extract on this data and backbone (dvc repro feature-extract)"
            ) from None
    frozen = backbones.freeze_base(net.base, unfreeze, batchnorm)
    image_input = ImageInput(tuple(spec["mean"]), tuple(spec["std"]), inp.augmentation, inp.channels_last)
    return Setup(net, spec, inp.images, image_input, frozen, parameter_count(net), isinstance(tech, FineTune))


def modern(inp: Inputs) -> Setup:
    """A network from random weights on images, as scratch: the spec says which (`networks.build_net`)."""
    return scratch(inp)


BUILDERS: dict[str, Callable[[Inputs], Setup]] = {
    "scratch": scratch,
    "modern": modern,
    "head": head,
    "transfer": transfer,
}


def builder(technique: Scratch | Modern | FeatureExtract | FineTune) -> Callable[[Inputs], Setup]:
    """The builder of the network a technique trains."""
    return BUILDERS[networks.network_of(technique)]


def trained_head(checkpoint: Path, spec: dict) -> dict:
    """The dense head's weights from the feature-extract checkpoint (cached or augmented mode)."""
    if not checkpoint.exists():
        raise DataError(
            f"fine-tune starts from the feature-extract head, but {checkpoint} does not exist: "
            "run the feature-extract stage first (dvc repro feature-extract)"
        )
    state = networks.read_checkpoint(checkpoint)
    trained = state["hyper_parameters"]["spec"]
    if trained.get("backbone", {}).get("timm_name") != spec["backbone"]["timm_name"] or trained["head"] != spec["head"]:
        raise ConfigError(
            f"{checkpoint} was trained for backbone {trained.get('backbone', {}).get('timm_name')!r} with "
            f"head {trained.get('head')}, but fine-tune is configured for {spec['backbone']['timm_name']!r} "
            f"with head {spec['head']}: rerun feature-extract with the same backbone"
        )
    prefix = "net." if trained["network"] == "head" else "net.head."
    return {k.removeprefix(prefix): v for k, v in state["state_dict"].items() if k.startswith(prefix)}

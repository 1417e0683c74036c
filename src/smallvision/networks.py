"""The networks the study trains, described by a `spec`, and how a checkpoint is rebuilt into one.

A `spec` is a plain dict that fully describes a network; checkpoints carry it, so `predict`, `visualize`
and `fine-tune` rebuild networks without the config that trained them.

Two vocabularies, for two different things:

- a technique's `kind` (`techniques.<name>.kind` in conf/) says how it trains: `scratch` (baseline, augment: the
  book's convnet from random weights), `modern` (modern: a mini Xception from random weights, with today's
  practice), `feature_extract` (a head on a frozen pretrained base) or `fine_tune` (the base's top blocks trained
  too, from feature-extract's head);
- a spec's `network` says what is built and saved: `scratch` (the small convnet), `modern` (the mini Xception),
  `head` (a dense head alone, trained on cached features of a pretrained base) or `transfer` (a pretrained base
  with a dense head).

`network_of` maps the first to the second: scratch -> scratch, modern -> modern, feature_extract -> head (mode
cached) or transfer (mode augmented), fine_tune -> transfer. `smallvision.techniques` has one builder per network,
named after it. `FROM_SCRATCH` are the networks without a pretrained base.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import torch
from torch import nn

from smallvision.data.images import Resize
from smallvision.data.preprocess import backbone_normalisation, backbone_resize, normalise, to_pixels
from smallvision.errors import DataError
from smallvision.files import special_file_kind
from smallvision.models import backbones
from smallvision.models.convnet import SmallConvNet
from smallvision.models.heads import DenseHead, TransferNet
from smallvision.models.modern import ModernConvNet
from smallvision.schema import Backbone
from smallvision.schema_rules import MAX_IMAGE_SIZE
from smallvision.schema_techniques import FeatureExtract, FineTune, Modern, Scratch

Technique = Scratch | Modern | FeatureExtract | FineTune
# the networks trained from random weights, without a backbone, and what metrics and runs call them
FROM_SCRATCH = {"scratch": "small_convnet", "modern": "mini_xception"}

IDENTITY_NORM = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}  # Keras rescale=1/255 only


def num_outputs(num_classes: int) -> int:
    """One logit for two classes (sigmoid, as the book), one per class otherwise (softmax)."""
    if num_classes < 2:
        raise DataError(f"need at least 2 classes, found {num_classes}")
    return 1 if num_classes == 2 else num_classes


def network_of(technique: Technique) -> str:
    """The network a technique trains (`scratch`, `modern`, `head` or `transfer`) for its `kind` (see the module
    docstring)."""
    if technique.kind in FROM_SCRATCH:
        return technique.kind
    return "head" if technique.cached else "transfer"


def input_resize(technique: Technique, backbone: Backbone) -> Resize:
    """How a technique's photos are resized: the convnets from scratch squash them (Keras' target_size); a
    pretrained base gets them as it was trained (`backbone.resize`, see `smallvision.data.preprocess.backbone_resize`)."""
    if technique.kind in FROM_SCRATCH:
        return Resize(technique.image_size)
    return backbone_resize(backbone, technique.image_size)


def spec_resize(spec: dict) -> Resize:
    """How the network of `spec` wants its photos resized (a checkpoint from before `resize` was recorded was
    trained on squashed photos)."""
    return Resize(**spec["resize"]) if "resize" in spec else Resize(spec["image_size"])


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(N, classes) probabilities from a network's logits: sigmoid of the one logit (its class 1) for two
    classes, softmax over one logit per class otherwise."""
    logits = logits.float()
    if logits.shape[1] == 1:
        p1 = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p1, p1], 1)
    return logits.softmax(1)


def make_spec(technique: Technique, backbone: Backbone, classes: list[str], in_features: int | None = None) -> dict:
    """The spec of the network `technique` trains (plain types: checkpoints carry it). `in_features` is the pooled
    feature size of the backbone."""
    base = {
        "classes": list(classes),
        "num_outputs": num_outputs(len(classes)),
        "image_size": technique.image_size,
        "resize": input_resize(technique, backbone).to_dict(),
    }
    network = network_of(technique)
    if isinstance(technique, Scratch):
        return {**base, "network": network, "dropout": technique.dropout, **IDENTITY_NORM}
    if isinstance(technique, Modern):
        layout = {"widths": list(technique.widths), "separable": technique.separable}
        layout |= {"stem_kernel": technique.stem_kernel, "stem_stride": technique.stem_stride}
        layout |= {"dropout": technique.dropout}
        return {**base, "network": network, **layout, **IDENTITY_NORM}
    head = technique.head
    mean, std = backbone_normalisation(backbone)
    return {
        **base,
        "network": network,
        "backbone": backbone.model_dump(),
        "mean": mean,  # resolved: what predict, export and a logged model normalise with
        "std": std,
        "pool": head.pool,
        "head": {"in_features": in_features, "units": head.units, "dropout": head.dropout},
    }


def network_name(technique: Technique, backbone: Backbone) -> str:
    """What a technique's metrics and runs call its network: the backbone's name, or that of the convnet from
    scratch (small_convnet, mini_xception)."""
    return FROM_SCRATCH.get(technique.kind, backbone.name)


def spec_network_name(spec: dict) -> str:
    """The same, from a network's spec."""
    return spec["backbone"]["name"] if "backbone" in spec else FROM_SCRATCH[spec["network"]]


def build_head(spec: dict) -> DenseHead:
    h = spec["head"]
    return DenseHead(h["in_features"], h["units"], h["dropout"], spec["num_outputs"])


def build_net(spec: dict, pretrained: bool = True) -> nn.Module:
    """The network of `spec`. With pretrained=False the base is random (its weights come from a checkpoint).

    A "head" spec (trained on cached features) builds the head alone.
    """
    if spec["network"] == "scratch":
        return SmallConvNet(spec["image_size"], spec["num_outputs"], spec["dropout"])
    if spec["network"] == "modern":
        layout = (spec["widths"], spec["separable"], spec["stem_kernel"], spec["stem_stride"], spec["dropout"])
        return ModernConvNet(*layout, spec["num_outputs"])
    if spec["network"] == "head":
        return build_head(spec)
    bb = copy.deepcopy(spec["backbone"])
    if not pretrained:
        bb["weights"] = {**bb.get("weights", {}), "source": "none"}
    base = backbones.create_backbone(bb, allow_random=not pretrained)
    return TransferNet(base, build_head(spec), spec["pool"])


class ImageClassifier(nn.Module):
    """A trained network with its input normalisation: uint8 RGB images (N, H, W, 3), already resized to the spec's
    image_size, in; the network's logits out. What `predict` runs and what MLflow stores, so a served model needs
    only the resize (no mean/std to get wrong)."""

    def __init__(self, net: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.net = net
        self.mean, self.std = list(mean), list(std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(normalise(to_pixels(images), self.mean, self.std))


def read_checkpoint(path: Path) -> dict:
    """A training checkpoint's contents (its `spec` and `state_dict`), read without executing code from the file
    (weights_only). Anything else (a pickle that would run code, a corrupt file, another program's checkpoint) is
    a one-line DataError."""
    path = Path(path)
    kind = special_file_kind(path)
    if kind:
        raise DataError(f"checkpoint {path} is {kind}, not a file: train that technique again (dvc repro)")
    if not path.is_file():
        raise DataError(f"checkpoint {path} not found: train that technique first (dvc repro)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a pickle that wants to run code, or a corrupt file
        called = re.search(r"GLOBAL (\S+)", str(err))
        why = f"loading it would call {called[1]}" if called else "corrupt, or not a checkpoint"
        raise DataError(f"refusing to load {path}: not a plain weights checkpoint ({why})") from None
    if not (
        isinstance(ckpt, dict)
        and isinstance(ckpt.get("hyper_parameters"), dict)
        and isinstance(ckpt["hyper_parameters"].get("spec"), dict)
        and isinstance(ckpt.get("state_dict"), dict)
    ):
        raise DataError(
            f"{path} is not a smallvision checkpoint (no hyper_parameters.spec and state_dict): "
            "retrain the technique (dvc repro) or point at the best.ckpt it wrote"
        )
    return ckpt


def check_fits_weights(spec: dict, state: dict, path: Path) -> None:
    """Refuse (DataError) a checkpoint whose spec would build a network other than its weights: an image size out of
    the schema's bounds, or one that does not fit the weights' shapes (a small file whose spec claims a large size
    would otherwise allocate gigabytes before the mismatch shows). The spec's network is built on PyTorch's `meta`
    device first: shapes only, no memory."""
    size = spec.get("image_size")
    if not isinstance(size, int) or isinstance(size, bool) or not 16 <= size <= MAX_IMAGE_SIZE:
        raise DataError(
            f"checkpoint {path} does not rebuild into its network: its image_size={size!r} is not a size one takes (16 to {MAX_IMAGE_SIZE} px); "
            "retrain the technique (dvc repro)"
        )
    with torch.device("meta"):
        expected = build_net(spec, pretrained=False).state_dict()
    for key, tensor in expected.items():
        if key in state and tuple(state[key].shape) != tuple(tensor.shape):
            raise DataError(
                f"checkpoint {path} does not rebuild into its network: its image_size={size} does not fit its "
                f"weights ({key}: "
                f"{tuple(state[key].shape)} in the file, {tuple(tensor.shape)} at that size); retrain the technique "
                "(dvc repro)"
            )


def load_checkpoint(path: Path, pretrained_base: bool = False) -> tuple[nn.Module, dict]:
    """Rebuild a trained network from a checkpoint without executing code from the file (weights_only)."""
    ckpt = read_checkpoint(path)
    spec = ckpt["hyper_parameters"]["spec"]
    state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    try:
        if spec["network"] == "head":  # a head trained on cached features: put it back on its pretrained base
            head_spec = {**spec, "network": "transfer"}
            net = build_net(head_spec, pretrained=True)
            net.head.load_state_dict(state)
            return net, head_spec
        check_fits_weights(spec, state, path)  # before the real network is allocated
        net = build_net(spec, pretrained=pretrained_base)
        net.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:  # a spec or weights that do not fit together
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(
            f"checkpoint {path} does not rebuild into its network ({type(err).__name__}: {first[:200]}); "
            "retrain the technique (dvc repro)"
        ) from None
    return net, spec

"""A composed config (the `smoke` preset: 64 px generated images, a few epochs), a prepared synthetic dataset
(generated, offline) for tests that train, and a split's network input and class probabilities computed by hand
to check what a run wrote."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import timm
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from helpers import ROOT
from smallvision.data.images import ImageLimits
from smallvision.data.manifest import Record, load_manifest
from smallvision.data.split import prepare_split
from smallvision.data.synthetic import generate
from smallvision.entrypoints import load_settings
from smallvision.schema import Settings, Split
from smallvision.schema_techniques import FeatureExtract, FineTune, Scratch
from smallvision.training import Paths

CONF = str(ROOT / "conf")
LIMITS = ImageLimits(89_478_485, 268_435_456)  # conf/data/_base.yaml's data.max_image_pixels and max_image_bytes
TECHNIQUES = ("baseline", "augment", "feature_extract", "fine_tune")  # the book's four, in the study's order


def config(*overrides: str) -> Settings:
    """conf/ composed with the smoke preset, tracking off, then `overrides` (e.g. more epochs where a test needs
    the network to learn), as the typed settings an entry script builds."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return load_settings(compose("config", overrides=["preset=smoke", "logger.enabled=false", *overrides]))


def technique(name: str = "baseline", **changes) -> Scratch | FeatureExtract | FineTune:
    """A technique's settings (the smoke preset's) with `changes`, e.g. technique(image_size=48)."""
    return config().techniques[name].model_copy(update=changes)


def make_dataset(root: Path, per_class: int = 100, classes=("circle", "square"), seed: int = 0) -> Path:
    """Generated images under root/data/raw, split into root/data/prepared; returns root."""
    generate(root / "data" / "raw", classes=classes, per_class=per_class, image_size=64, seed=seed)
    prepare_split(
        root / "data" / "raw",
        root / "data" / "prepared",
        split=Split(train=0.5, val=0.25, test=0.25),
        seed=0,
        classes=None,
        workers=1,
        limits=LIMITS,
        progress=False,
    )
    return root


def paths(root: Path, technique: str) -> Paths:
    return Paths(
        prepared=root / "data/prepared",
        cache=root / "data/cache",
        features=root / "data/features",
        out=root / "models" / technique,
        models=root / "models",
    )


def save_checkpoint(net: torch.nn.Module, spec: dict, path: Path) -> None:
    """What training saves (Lightning: the spec in hyper_parameters, the module's weights under net.)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"hyper_parameters": {"spec": spec}, "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, path
    )


def split_input(root: Path, spec: dict, split: str = "test") -> tuple[list[Record], torch.Tensor]:
    """The `split` images of root's manifest and the network input a checkpoint's `spec` asks for, computed here
    with PIL and numpy (not the project's preprocessing): resized to image_size (bilinear, as Keras' target_size),
    (x / 255 - mean) / std, channels first."""
    records = [r for r in load_manifest(root / "data" / "prepared")[0] if r.split == split]
    size = spec["image_size"]
    pixels = np.stack(
        [np.asarray(Image.open(r.file).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)) for r in records]
    ).astype(np.float32)
    x = (pixels / 255 - np.array(spec["mean"], np.float32)) / np.array(spec["std"], np.float32)
    return records, torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def class_probabilities(net: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """(N, classes) probabilities of `net` in eval mode, by hand: one logit is P(second class) through a sigmoid
    (the book's binary cross-entropy), several are a softmax."""
    net.eval()
    with torch.no_grad():
        z = net(x).double().numpy()
    if z.shape[1] == 1:
        p1 = 1 / (1 + np.exp(-z[:, 0]))
        return np.stack([1 - p1, p1], 1)
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@contextmanager
def small_vgg_classifier() -> Iterator[None]:
    """timm's VGG16 built with its conv base as is but a tiny fully connected `pre_logits` (which forward_features
    never runs and loading drops): 0.3 s instead of 5 s to build, the same conv base to load weights into."""
    real = timm.create_model

    def create(name: str, *args, **kwargs):
        return real(name, *args, **({"mlp_ratio": 1 / 1024} | kwargs if name.startswith("vgg") else kwargs))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timm, "create_model", create)
        yield


def add_callbacks(monkeypatch: pytest.MonkeyPatch, *callbacks: L.Callback) -> None:
    """Every Lightning Trainer that smallvision.training makes (while `monkeypatch` lasts) also runs `callbacks`."""
    from smallvision import training

    real = training.make_trainer
    monkeypatch.setattr(training, "make_trainer", lambda *a: real(*a[:4], [*a[4], *callbacks]))


class Weights(L.Callback):
    """The network's weights (or those of its submodule `part`) when training starts and when it ends."""

    def __init__(self, part: str = "") -> None:
        self.part = part
        self.start: dict[str, torch.Tensor] = {}
        self.end: dict[str, torch.Tensor] = {}

    def _state(self, module) -> dict[str, torch.Tensor]:
        net = module.net.get_submodule(self.part) if self.part else module.net
        return {k: v.detach().clone() for k, v in net.state_dict().items()}

    def on_fit_start(self, trainer, module) -> None:
        self.start = self._state(module)

    def on_fit_end(self, trainer, module) -> None:
        self.end = self._state(module)

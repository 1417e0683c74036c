"""A composed config (the `smoke` preset: 64 px generated images, a few epochs) and a prepared synthetic
dataset (generated, offline) for tests that train."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from smallvision.data.split import prepare_split
from smallvision.data.synthetic import generate
from smallvision.entrypoints import to_dict
from smallvision.training import Paths

ROOT = Path(__file__).resolve().parents[2]
CONF = str(ROOT / "conf")


def config(*overrides: str) -> dict:
    """conf/ composed with the smoke preset, tracking off, then `overrides` (e.g. more epochs where a test needs
    the network to learn)."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return to_dict(compose("config", overrides=["experiment=smoke", "logger.enabled=false", *overrides]))


def make_dataset(root: Path, per_class: int = 100, classes=("circle", "square"), seed: int = 0) -> Path:
    """Generated images under root/data/raw, split into root/data/prepared; returns root."""
    generate(root / "data" / "raw", classes=classes, per_class=per_class, image_size=64, seed=seed)
    prepare_split(
        root / "data" / "raw",
        root / "data" / "prepared",
        split={"train": 0.5, "val": 0.25, "test": 0.25},
        seed=0,
        workers=1,
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

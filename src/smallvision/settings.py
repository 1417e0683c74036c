"""Checks of a training job's configuration before any heavy work (the values and their defaults live in conf/)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smallvision.checks import one_of, positive_number, whole_number
from smallvision.data.augmentation import AffineConfig
from smallvision.errors import ConfigError
from smallvision.models.convnet import MIN_IMAGE_SIZE
from smallvision.modules.classifier import OPTIMIZERS

TECHNIQUE_KINDS = ("scratch", "feature_extract", "fine_tune")
FEATURE_MODES = ("cached", "augmented")
HEAD_KEYS = ("units", "dropout", "pool")


def sections_read(cfg: Mapping[str, Any]) -> list[str]:
    """The config a training job of cfg["technique"] reads (its DVC stage's params): its technique, the backbone
    for a pretrained one, the augmentation when it augments, the trainer and the seed."""
    tech = technique(cfg)
    keys = [f"techniques.{cfg['technique']}"]
    if tech["kind"] != "scratch":
        keys.append("backbone")
    if tech["augment"]:
        keys.append("augmentation")
    return [*keys, "trainer", "seed"]


def technique(cfg: Mapping[str, Any]) -> dict:
    """Check the settings of the technique `cfg["technique"]` selects; return its config."""
    name = cfg["technique"]
    one_of(name, "technique", sorted(cfg["techniques"]))
    tech = cfg["techniques"][name]
    key = f"techniques.{name}"
    one_of(tech["kind"], f"{key}.kind", TECHNIQUE_KINDS)
    for option in ("batch_size", "epochs", "image_size"):
        whole_number(tech[option], f"{key}.{option}")
    if tech["kind"] == "scratch" and tech["image_size"] < MIN_IMAGE_SIZE:
        raise ConfigError(
            f"{key}.image_size={tech['image_size']} is too small for the small convnet: "
            f"it needs at least {MIN_IMAGE_SIZE} px (4 x conv3x3 + pool2)"
        )
    positive_number(tech["optimizer"]["lr"], f"{key}.optimizer.lr")
    one_of(tech["optimizer"]["name"], f"{key}.optimizer.name", OPTIMIZERS)
    if tech["kind"] == "feature_extract":
        one_of(tech["mode"], f"{key}.mode", FEATURE_MODES)
    if tech["kind"] != "scratch":
        missing = [k for k in HEAD_KEYS if k not in (tech.get("head") or {})]
        if missing:
            raise ConfigError(f"{key}.head needs {', '.join(missing)} (the dense head on the base)")
    AffineConfig.from_mapping(cfg["augmentation"])  # raises ConfigError on a bad or misspelt transform key
    return tech

"""Checks of a training job's configuration before any heavy work (the values and their defaults live in conf/)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smallvision.checks import is_real, number_in, one_of, positive_number, whole_number
from smallvision.data.augmentation import AffineConfig
from smallvision.errors import ConfigError
from smallvision.models.backbones import BATCHNORM_MODES
from smallvision.models.convnet import MIN_IMAGE_SIZE
from smallvision.modules.optim import OPTIMIZERS, SCHEDULES

TECHNIQUE_KINDS = ("scratch", "feature_extract", "fine_tune")
FEATURE_MODES = ("cached", "augmented")
HEAD_KEYS = ("units", "dropout", "pool")


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
    _optimisation(tech, key)
    if tech["kind"] == "feature_extract":
        one_of(tech["mode"], f"{key}.mode", FEATURE_MODES)
        if not isinstance(tech["cached_flips"], bool):
            raise ConfigError(f"{key}.cached_flips={tech['cached_flips']!r} must be true or false")
    if tech["kind"] != "scratch":
        missing = [k for k in HEAD_KEYS if k not in (tech.get("head") or {})]
        if missing:
            raise ConfigError(f"{key}.head needs {', '.join(missing)} (the dense head on the base)")
    AffineConfig.from_mapping(cfg["augmentation"])  # raises ConfigError on a bad or misspelt transform key
    return tech


def _optimisation(tech: Mapping[str, Any], key: str) -> None:
    """The optimiser, learning-rate schedule, early stopping, test-time augmentation and fine-tuning options."""
    opt = tech["optimizer"]
    positive_number(opt["lr"], f"{key}.optimizer.lr")
    one_of(opt["name"], f"{key}.optimizer.name", OPTIMIZERS)
    number_in(opt["weight_decay"], f"{key}.optimizer.weight_decay", 0, 1)
    number_in(opt["layer_decay"], f"{key}.optimizer.layer_decay", 0, 1, why="1: the same rate for every layer")
    if opt["layer_decay"] == 0:
        raise ConfigError(f"{key}.optimizer.layer_decay=0 would freeze every layer below the head: use (0, 1]")
    one_of(tech["lr_schedule"]["name"], f"{key}.lr_schedule.name", SCHEDULES)
    warmup = tech["lr_schedule"]["warmup_epochs"]
    if not is_real(warmup) or not 0 <= warmup < tech["epochs"]:
        raise ConfigError(f"{key}.lr_schedule.warmup_epochs={warmup!r} must be >= 0 and below the epochs")
    if tech["early_stopping_patience"] is not None:
        whole_number(tech["early_stopping_patience"], f"{key}.early_stopping_patience")
    if not isinstance(tech["tta"], bool):
        raise ConfigError(f"{key}.tta={tech['tta']!r} must be true or false")
    if tech["kind"] == "fine_tune":
        one_of(tech["batchnorm"], f"{key}.batchnorm", BATCHNORM_MODES)
        blocks = tech["unfreeze_blocks"]
        if blocks != "all" and (isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 0):
            raise ConfigError(f"{key}.unfreeze_blocks={blocks!r} must be a whole number of top blocks, or all")

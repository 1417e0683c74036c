"""Checks of a training job's configuration before any heavy work (the values and their defaults live in conf/)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from smallvision.checks import check_settings, one_of
from smallvision.data.augmentation import AffineConfig
from smallvision.errors import ConfigError
from smallvision.models.backbones import BATCHNORM_MODES
from smallvision.models.convnet import DENSE_UNITS, FILTERS, MIN_IMAGE_SIZE, flatten_size
from smallvision.modules.optim import OPTIMIZERS, SCHEDULES

TECHNIQUE_KINDS = ("scratch", "feature_extract", "fine_tune")
FEATURE_MODES = ("cached", "augmented")
HEAD_KEYS = ("units", "dropout", "pool")
_FLOAT = 4  # bytes
_GB = 1e9


def technique(cfg: Mapping[str, Any]) -> dict:
    """Check the settings of the technique `cfg["technique"]` selects (and every numeric setting training reads,
    `smallvision.checks.STAGES["train"]`); return its config."""
    name = cfg["technique"]
    one_of(name, "technique", sorted(cfg["techniques"]))
    check_settings(cfg, "train")
    tech = cfg["techniques"][name]
    key = f"techniques.{name}"
    one_of(tech["kind"], f"{key}.kind", TECHNIQUE_KINDS)
    if tech["kind"] == "scratch" and tech["image_size"] < MIN_IMAGE_SIZE:
        raise ConfigError(
            f"{key}.image_size={tech['image_size']} is too small for the small convnet: "
            f"it needs at least {MIN_IMAGE_SIZE} px (4 x conv3x3 + pool2)"
        )
    _optimisation(tech, key)
    if tech["kind"] == "feature_extract":
        one_of(tech["mode"], f"{key}.mode", FEATURE_MODES)
    if tech["kind"] != "scratch":
        missing = [k for k in HEAD_KEYS if k not in (tech.get("head") or {})]
        if missing:
            raise ConfigError(f"{key}.head needs {', '.join(missing)} (the dense head on the base)")
    AffineConfig.from_mapping(cfg["augmentation"])  # raises ConfigError on a bad or misspelt transform key
    _check_memory(tech, f"{key}.image_size", cfg["trainer"]["accelerator"])
    return tech


def training_memory(tech: Mapping[str, Any], size: int) -> tuple[int, str]:
    """A lower bound on the bytes that training `tech` at `size` px holds at once, and what they are."""
    batch = max(tech["batch_size"], tech["eval_batch_size"])
    need = batch * 3 * size * size * _FLOAT
    what = f"a batch of {batch} images"
    if tech["kind"] == "scratch":
        need += batch * FILTERS[0] * (size - 2) ** 2 * _FLOAT  # the first conv layer's output
        weights = flatten_size(size) * DENSE_UNITS
        need += weights * _FLOAT * 3  # weights, gradients, optimiser state
        what += f" and the Dense layer's {weights:,} weights"
    return need, what


def machine_memory(accelerator: str) -> tuple[int, str] | None:
    """The memory training runs in (the GPU's, or this machine's), None when it cannot be read."""
    if accelerator in ("gpu", "cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory, "GPU memory"
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "memory"
    except (AttributeError, ValueError, OSError):  # not a POSIX system that reports it
        return None


def _check_memory(tech: Mapping[str, Any], key: str, accelerator: str) -> None:
    """Refuse an image size whose training cannot fit in memory, naming the largest size that can."""
    memory = machine_memory(accelerator)
    size = tech["image_size"]
    if memory is None or training_memory(tech, size)[0] <= memory[0]:
        return
    need, what = training_memory(tech, size)
    low, high = 16, size  # the largest size that fits lies in [low, high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if training_memory(tech, mid)[0] <= memory[0] else (low, mid)
    raise ConfigError(
        f"{key}={size} needs at least {need / _GB:,.1f} GB to train ({what}), more than this machine's "
        f"{memory[0] / _GB:,.1f} GB of {memory[1]} allows: use at most {low} px"
    )


def _optimisation(tech: Mapping[str, Any], key: str) -> None:
    """The optimiser, learning-rate schedule and fine-tuning choices (their numbers: smallvision.checks.NUMBERS)."""
    one_of(tech["optimizer"]["name"], f"{key}.optimizer.name", OPTIMIZERS)
    one_of(tech["lr_schedule"]["name"], f"{key}.lr_schedule.name", SCHEDULES)
    warmup = tech["lr_schedule"]["warmup_epochs"]
    if warmup >= tech["epochs"]:
        raise ConfigError(f"{key}.lr_schedule.warmup_epochs={warmup!r} must be below the epochs ({tech['epochs']})")
    if tech["kind"] == "fine_tune":
        one_of(tech["batchnorm"], f"{key}.batchnorm", BATCHNORM_MODES)

"""Checks of cfg.visualize before any figure is drawn, and the choice of an image by index or manifest path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from smallvision.checks import is_real, number_in, one_of, whole_number
from smallvision.data.manifest import Record
from smallvision.errors import ConfigError

# option -> the smallest value allowed
_WHOLE_NUMBERS = {
    "dpi": 1,
    "activations.columns": 1,
    "filters.per_layer": 1,
    "filters.columns": 1,
    "filters.steps": 0,
    "gradcam.per_group": 1,
    "augmentation_preview.count": 1,
    "augmentation_preview.columns": 1,
    "mistakes.max_images": 1,
    "mistakes.columns": 1,
    "mistakes.image_size": 1,
    "finetuning.images": 1,
    "patches.channels": 1,
    "patches.top": 1,
    "patches.columns": 1,
    "patches.batch_size": 1,
    "kernels.columns": 1,
}
_OPTIONAL_WHOLE_NUMBERS = ("threads", "activations.max_channels", "filters.image_size", "patches.images")
_SWITCHES = ("confusion", "finetuning", "pairs", "patches", "kernels")  # sections with `enabled: true | false`


def _get(v: Mapping[str, Any], option: str) -> Any:
    node = v
    for part in option.split("."):
        node = node[part]
    return node


def validate(v: Mapping[str, Any], known: list[str]) -> None:
    """Check cfg.visualize before any work; every message names the key and the fix."""
    for option in [f"{section}.enabled" for section in _SWITCHES] + ["patches.interior"]:
        if not isinstance(_get(v, option), bool):
            raise ConfigError(f"visualize.{option}={_get(v, option)!r} must be true or false")
    for option in (
        "techniques",
        "activations.techniques",
        "filters.techniques",
        "pairs.techniques",
        "patches.techniques",
        "kernels.techniques",
    ):
        names = _get(v, option)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(
                f"visualize.{option}={names!r} must be a list of technique names, e.g. [augment, fine_tune]"
            )
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(f"visualize.{option} names unknown technique(s) {unknown}; known: {', '.join(known)}")
    for option, minimum in _WHOLE_NUMBERS.items():
        whole_number(_get(v, option), f"visualize.{option}", minimum)
    for option in _OPTIONAL_WHOLE_NUMBERS:
        if _get(v, option) is not None:
            whole_number(_get(v, option), f"visualize.{option}")
    number_in(
        v["curves"]["smoothing"],
        "visualize.curves.smoothing",
        0,
        1,
        high_open=True,
        why="0: raw curves; the book uses 0.8",
    )
    number_in(
        v["gradcam"]["image_weight"], "visualize.gradcam.image_weight", 0, 1, why="the image's share of the overlay"
    )
    for option in ("step_size", "noise"):
        value = v["filters"][option]
        if not is_real(value) or value < 0:
            raise ConfigError(f"visualize.filters.{option}={value!r} must be a number >= 0")
    one_of(v["device"], "visualize.device", ("cpu", "cuda", "auto"))
    if v["device"] == "cuda" and not torch.cuda.is_available():
        raise ConfigError("visualize.device=cuda but no CUDA device is available: use visualize.device=cpu or auto")
    one_of(v["mistakes"]["technique"], "visualize.mistakes.technique", ["best", *known])
    one_of(v["augmentation_preview"]["technique"], "visualize.augmentation_preview.technique", known)
    for option in ("before", "after"):
        one_of(v["finetuning"][option], f"visualize.finetuning.{option}", known)


def pick(records: list[Record], which: int | str, option: str) -> Record:
    """A record by index into the split or by its manifest path."""
    if isinstance(which, str):
        for r in records:
            if r.path == which:
                return r
        raise ConfigError(
            f"visualize.{option}={which!r} is not a path of that split in the manifest "
            f"(e.g. {records[0].path!r}); give a manifest path or an index"
        )
    if isinstance(which, bool) or not isinstance(which, int) or not -len(records) <= which < len(records):
        raise ConfigError(
            f"visualize.{option}={which!r}: the split has {len(records)} images; "
            f"give an index from 0 to {len(records) - 1} or a manifest path"
        )
    return records[which]

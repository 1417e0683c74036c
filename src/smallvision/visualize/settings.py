"""Checks of cfg.visualize before any figure is drawn, and the choice of an image by index or manifest path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from smallvision.checks import check_numbers, one_of
from smallvision.data.manifest import Record
from smallvision.errors import ConfigError


def _get(v: Mapping[str, Any], option: str) -> Any:
    node = v
    for part in option.split("."):
        node = node[part]
    return node


def validate(v: Mapping[str, Any], known: list[str]) -> None:
    """Check cfg.visualize before any work; every message names the key and the fix."""
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
    check_numbers({"visualize": v}, ["visualize"])  # the bounds of every number: smallvision.checks.NUMBERS
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

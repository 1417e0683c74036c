"""What the visualize settings' values cannot say alone (a CUDA device that is there), checked before any figure is
drawn (the values themselves: `smallvision.schema_visualize.Visualize`), and the choice of an image by index or manifest
path."""

from __future__ import annotations

import torch

from smallvision.data.manifest import Record
from smallvision.errors import ConfigError


def check_device(device: str) -> None:
    """visualize.device=cuda needs a CUDA device on this machine."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("visualize.device=cuda but no CUDA device is available: use visualize.device=cpu or auto")


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

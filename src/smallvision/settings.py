"""Whether a training job's configuration fits this machine: the memory check run once when its settings are loaded
(the values and their rules: `smallvision.schema`; the sections a job reads: `smallvision.stages.training_reads`)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from smallvision.errors import ConfigError
from smallvision.models.convnet_sizes import DENSE_UNITS, FILTERS, MIN_IMAGE_SIZE, flatten_size

if TYPE_CHECKING:
    from smallvision.schema_techniques import FeatureExtract, FineTune, Scratch

_FLOAT = 4  # bytes
_GB = 1e9


def training_memory(tech: Scratch | FeatureExtract | FineTune, size: int) -> tuple[int, str]:
    """A lower bound on the bytes that training `tech` at `size` px holds at once, and what they are."""
    batch = max(tech.batch_size, tech.eval_batch_size)
    need = batch * 3 * size * size * _FLOAT
    what = f"a batch of {batch} images"
    if tech.kind == "scratch":
        need += batch * FILTERS[0] * (size - 2) ** 2 * _FLOAT  # the first conv layer's output
        weights = flatten_size(size) * DENSE_UNITS
        need += weights * _FLOAT * 3  # weights, gradients, optimiser state
        what += f" and the Dense layer's {weights:,} weights"
    return need, what


def machine_memory(accelerator: str) -> tuple[int, str] | None:
    """The memory training runs in (the GPU's, or this machine's), None when it cannot be read."""
    import torch  # here: the data stages, which import this module, need not load torch

    if accelerator in ("gpu", "cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory, "GPU memory"
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "memory"
    except (AttributeError, ValueError, OSError):  # not a POSIX system that reports it
        return None


def check_memory(tech: Scratch | FeatureExtract | FineTune, key: str, accelerator: str) -> None:
    """Refuse an image size whose training cannot fit in memory, naming the largest size that can (`key`: the
    technique's dotted key)."""
    memory = machine_memory(accelerator)
    size = tech.image_size
    if memory is None or training_memory(tech, size)[0] <= memory[0]:
        return
    need, what = training_memory(tech, size)
    smallest = MIN_IMAGE_SIZE if tech.kind == "scratch" else 16  # the least the schema allows the network
    if training_memory(tech, smallest)[0] > memory[0]:  # no image size fits: the batch is what is too large
        batch_key = "batch_size" if tech.batch_size >= tech.eval_batch_size else "eval_batch_size"
        raise ConfigError(
            f"{key}.{batch_key}={getattr(tech, batch_key)} needs at least {training_memory(tech, smallest)[0] / _GB:,.1f} GB "
            f"to train even at the smallest image size ({smallest} px), more than this machine's "
            f"{memory[0] / _GB:,.1f} GB of {memory[1]} allows: lower the batch size"
        )
    low, high = smallest, size  # the largest size that fits lies in [low, high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if training_memory(tech, mid)[0] <= memory[0] else (low, mid)
    raise ConfigError(
        f"{key}.image_size={size} needs at least {need / _GB:,.1f} GB to train ({what}), more than this machine's "
        f"{memory[0] / _GB:,.1f} GB of {memory[1]} allows: use at most {low} px"
    )

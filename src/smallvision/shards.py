"""Exact evaluation under DDP: each rank takes a disjoint, unpadded shard, and the per-sample results are
gathered back by index, so every image is counted exactly once on any number of processes.

Lightning's DistributedSampler would pad shards by repeating images, so its automatic sampler is switched off
(`use_distributed_sampler=False`) and `ShardSampler` + `gather_shards` are used instead.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import Sampler


class ShardSampler(Sampler[int]):
    """Disjoint, unpadded shards for evaluation: rank r gets r, r + world, r + 2*world, ..."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def gather_shards(module: L.LightningModule, local: dict[str, Tensor]) -> dict[str, Tensor]:
    """Every rank's per-sample tensors, each sample once, sorted by `local["idx"]` (the sample's position).

    Each tensor has one row per sample of this rank. Shards differ in length by one at most, so every rank pads
    its own to the longest (idx -1), all_gathers, and drops the padding.
    """
    if module.trainer.world_size > 1:
        longest = int(module.all_gather(torch.tensor(len(local["idx"]), device=module.device)).max())
        padded = {}
        for key, value in local.items():
            pad = torch.full(
                (longest - len(value), *value.shape[1:]),
                -1 if key == "idx" else 0,
                dtype=value.dtype,
                device=value.device,
            )
            padded[key] = module.all_gather(torch.cat([value, pad])).reshape(-1, *value.shape[1:])
        keep = padded["idx"] >= 0
        local = {key: value[keep] for key, value in padded.items()}
    order = torch.argsort(local["idx"])
    return {key: value[order] for key, value in local.items()}

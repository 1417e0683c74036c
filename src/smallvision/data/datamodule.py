"""LightningDataModule over in-memory arrays (decoded images or cached features), exact under DDP.

Training shuffles per rank (seeded); validation and test take disjoint, unpadded shards (`smallvision.shards`),
whose per-sample results the module gathers back, so every image is counted exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler

from smallvision.errors import DataError
from smallvision.shards import ShardSampler


class ArrayDataset(Dataset):
    """Rows `rows` of `array` with their labels; items are (x, label, position in this split)."""

    def __init__(self, array: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> None:
        self.array, self.labels, self.rows = array, labels, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        row = int(self.rows[i])
        return torch.from_numpy(np.array(self.array[row])), int(self.labels[row]), i  # a copy: the array is read-only


@dataclass
class SplitArrays:
    """Everything a datamodule needs: one array for all rows, labels, and the rows of each split."""

    array: np.ndarray
    labels: np.ndarray
    rows: dict[str, np.ndarray]
    classes: list[str]


class ArrayDataModule(L.LightningDataModule):
    def __init__(
        self, data: SplitArrays, batch_size: int, seed: int, eval_batch_size: int | None = None, num_workers: int = 0
    ) -> None:
        super().__init__()
        self.data = data
        self.batch_size = batch_size
        self.eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
        self.seed = seed
        self.num_workers = num_workers

    def dataset(self, split: str) -> ArrayDataset:
        return ArrayDataset(self.data.array, self.data.labels, self.data.rows[split])

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _loader(self, dataset: Dataset, sampler: Sampler, batch_size: int) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        ds = self.dataset("train")
        rank, world = self._rank_world()
        if world > 1:  # a different, seeded shuffle per rank; Lightning calls set_epoch each epoch
            sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
        else:
            sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(self.seed))
        return self._loader(ds, sampler, self.batch_size)

    def _eval_loader(self, split: str) -> DataLoader:
        ds = self.dataset(split)
        rank, world = self._rank_world()
        if len(ds) < world:  # a rank without images would skip the epoch and leave the others waiting in the gather
            raise DataError(
                f"the {split} split has {len(ds)} images but {world} processes evaluate it; "
                "each needs at least one: use fewer devices (trainer.devices) or a larger split"
            )
        return self._loader(ds, ShardSampler(len(ds), rank, world), self.eval_batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

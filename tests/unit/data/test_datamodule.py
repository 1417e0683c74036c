"""The datamodule over in-memory arrays: a seeded shuffle for training, exact unpadded shards for evaluation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from smallvision.data.datamodule import ArrayDataModule, SplitArrays
from smallvision.errors import DataError

N = 10
ARRAY = np.arange(N * 2 * 2 * 3, dtype=np.uint8).reshape(N, 2, 2, 3)
ROWS = {"train": np.arange(6), "val": np.array([6, 7]), "test": np.array([9, 8])}


def module(seed: int = 0, eval_batch_size: int | None = None) -> ArrayDataModule:
    data = SplitArrays(ARRAY, np.arange(N) % 2, ROWS, ["a", "b"])
    return ArrayDataModule(data, batch_size=4, seed=seed, eval_batch_size=eval_batch_size)


def positions(loader) -> list[int]:
    return [int(i) for _, _, batch in loader for i in batch]


def test_an_item_is_the_rows_image_its_label_and_its_position_in_the_split():
    x, label, position = module().dataset("test")[0]
    assert np.array_equal(x.numpy(), ARRAY[9]) and label == 1 and position == 0


def test_training_sees_every_row_once_per_epoch_in_an_order_set_by_the_seed():
    first = positions(module(seed=0).train_dataloader())
    assert sorted(first) == list(range(6))
    assert positions(module(seed=0).train_dataloader()) == first
    assert any(positions(module(seed=s).train_dataloader()) != first for s in range(1, 4))


def test_evaluation_takes_each_row_once_in_order_in_batches_of_its_own_size():
    loader = module(eval_batch_size=1).test_dataloader()
    assert [len(batch[2]) for batch in loader] == [1, 1] and positions(loader) == [0, 1]
    assert [int(label) for _, labels, _ in module().val_dataloader() for label in labels] == [0, 1]


def test_a_split_smaller_than_the_number_of_processes_is_refused():
    dm = module()
    dm.trainer = SimpleNamespace(global_rank=0, world_size=3)
    with pytest.raises(DataError, match="the val split has 2 images but 3 processes evaluate it"):
        dm.val_dataloader()

"""Exact evaluation shards: disjoint, unpadded, together every sample once, and gathered back in sample order."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from smallvision.shards import ShardSampler, gather_shards


@pytest.mark.parametrize(("n", "world"), [(10, 1), (10, 3), (7, 4), (3, 3)])
def test_shards_are_disjoint_unpadded_and_cover_every_sample_once(n, world):
    shards = [list(ShardSampler(n, rank, world)) for rank in range(world)]
    assert sorted(i for shard in shards for i in shard) == list(range(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [len(ShardSampler(n, rank, world)) for rank in range(world)] == list(map(len, shards))


def test_one_process_gathers_its_own_results_in_sample_order():
    module = SimpleNamespace(trainer=SimpleNamespace(world_size=1))
    local = {"idx": torch.tensor([2, 0, 1]), "target": torch.tensor([[20], [0], [10]])}
    gathered = gather_shards(module, local)
    assert gathered["idx"].tolist() == [0, 1, 2] and gathered["target"].flatten().tolist() == [0, 10, 20]

"""The run files: a seed sweep's rows aggregated per technique."""

from __future__ import annotations

import pytest

from smallvision.errors import DataError
from smallvision.runs import aggregate_seeds


def test_aggregate_seeds_gives_mean_and_spread_per_technique():
    rows = [{"technique": "augment", "seed": s, "test_accuracy": a} for s, a in ((0, 0.80), (1, 0.84), (2, 0.82))]
    rows += [{"technique": "baseline", "seed": 0, "test_accuracy": 0.70}]
    baseline, augment = aggregate_seeds(rows)
    assert baseline == {
        "technique": "baseline",
        "n_seeds": 1,
        "seeds": [0],
        "test_accuracy_mean": 0.70,
        "test_accuracy_std": 0.0,
        "test_accuracy_min": 0.70,
        "test_accuracy_max": 0.70,
        "test_accuracy_values": [0.70],
    }
    assert augment["n_seeds"] == 3 and augment["seeds"] == [0, 1, 2]
    assert augment["test_accuracy_values"] == [0.80, 0.84, 0.82]  # in the order of the seeds
    assert augment["test_accuracy_mean"] == pytest.approx(0.82)
    assert augment["test_accuracy_std"] == pytest.approx(0.02)  # sample std (n - 1)
    assert (augment["test_accuracy_min"], augment["test_accuracy_max"]) == (0.80, 0.84)
    assert aggregate_seeds(rows, metric="seed")[1]["seed_mean"] == 1.0


def test_aggregate_seeds_refuses_rows_that_differ_in_more_than_the_seed():
    rows = [{"technique": "baseline", "seed": 0, "test_accuracy": a} for a in (0.7, 0.6)]
    with pytest.raises(DataError, match="two runs with seed 0"):
        aggregate_seeds(rows)
    with pytest.raises(DataError, match="lacks seed"):
        aggregate_seeds([{"technique": "baseline", "test_accuracy": 0.7}])

"""Results across seeds: one row per technique with the mean and spread of a metric over its seeds.

A seed sweep (`python pipelines/train.py -m technique=baseline,augment seed=0,1,2`) gives one metrics
row per job; the comparison table and chart show these aggregated rows instead of a single run each.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping

from smallvision.errors import DataError

STUDY_ORDER = ("baseline", "augment", "feature_extract", "fine_tune")


def aggregate_seeds(rows: Iterable[Mapping], metric: str = "test_accuracy") -> list[dict]:
    """Group metrics rows (metrics.json contents) by technique and summarise `metric` across their seeds.

    Returns, in the study's order (then by name), one dict per technique:
    {"technique", "n_seeds", "seeds", "<metric>_mean", "<metric>_std", "<metric>_min", "<metric>_max",
    "<metric>_values"} (the values in the order of "seeds", for a chart that shows each seed).
    The std is the sample standard deviation (n - 1), 0.0 for a single seed. Raises DataError when a
    row lacks the technique, seed or metric, or when a technique has two rows with the same seed (those
    rows differ in something else, e.g. a learning rate, and must not be averaged together).
    """
    groups: dict[str, dict[int, float]] = {}
    for row in rows:
        missing = [k for k in ("technique", "seed", metric) if k not in row]
        if missing:
            raise DataError(f"a metrics row lacks {', '.join(missing)}: {dict(row)}; rerun its training job")
        technique, seed, value = str(row["technique"]), int(row["seed"]), float(row[metric])
        seen = groups.setdefault(technique, {})
        if seed in seen:
            raise DataError(f"technique {technique!r} has two runs with seed {seed}: they differ in more than the "
                            "seed; aggregate each setting separately")
        seen[seed] = value
    order = {name: i for i, name in enumerate(STUDY_ORDER)}
    summary = []
    for technique in sorted(groups, key=lambda t: (order.get(t, len(order)), t)):
        values = [groups[technique][s] for s in sorted(groups[technique])]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.append({
            "technique": technique, "n_seeds": len(values), "seeds": sorted(groups[technique]),
            f"{metric}_mean": statistics.fmean(values), f"{metric}_std": std,
            f"{metric}_min": min(values), f"{metric}_max": max(values), f"{metric}_values": values,
        })
    return summary

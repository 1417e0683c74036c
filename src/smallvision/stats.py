"""Statistics of test results: the Wilson interval of an accuracy, the confusion matrix, and the paired
comparison of two classifiers on the same test images (McNemar's exact test, Newcombe's interval of the
accuracy difference), and the interval of a mean over seeds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (well-behaved near 0 and 1, unlike the normal one)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def confusion_matrix(y: np.ndarray, pred: np.ndarray, num_classes: int) -> list[list[int]]:
    """Rows: true class; columns: predicted class."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return m.tolist()


# ----------------------------------------------------------------------------------------------- paired


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """McNemar's exact (conditional) test, two-sided: under "equally accurate" each discordant image (right with
    one classifier only) is right with the first one with probability 1/2, so `only_first` ~ Binomial(discordant,
    1/2). 1.0 when no image is discordant (the two agree on every image)."""
    discordant = only_first + only_second
    if discordant == 0:
        return 1.0
    from scipy import stats as scipy_stats  # here: every entry script imports this module (via stages and runs)

    return float(scipy_stats.binomtest(only_first, discordant, 0.5).pvalue)


def paired_difference_interval(
    both: int, only_first: int, only_second: int, neither: int, z: float = Z95
) -> tuple[float, float]:
    """Interval of accuracy(second) - accuracy(first) on the same images: Newcombe's square-and-add interval for
    paired proportions (Newcombe 1998, Stat. Med. 17:2635, method 10; as in Fagerland, Lydersen & Laake,
    "Statistical Analysis of Contingency Tables", ch. 8): each accuracy's Wilson interval, combined with the
    (continuity-corrected) correlation of the two. Stays within [-1, 1], unlike the Wald interval."""
    n = both + only_first + only_second + neither
    if n <= 0:
        return float("nan"), float("nan")
    second, first = both + only_second, both + only_first  # correct counts
    p1, p2 = second / n, first / n
    l1, u1 = wilson_interval(second, n, z)
    l2, u2 = wilson_interval(first, n, z)
    psi = 0.0
    if 0 < second < n and 0 < first < n:
        a = both * neither - only_second * only_first
        scale = math.sqrt(second * (n - second) * first * (n - first))
        psi = (a - n / 2) / scale if a > n / 2 else (a / scale if a < 0 else 0.0)
    estimate = p1 - p2
    low = estimate - math.sqrt(max(0.0, (p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * psi * (p1 - l1) * (u2 - p2)))
    high = estimate + math.sqrt(max(0.0, (p2 - l2) ** 2 + (u1 - p1) ** 2 - 2 * psi * (p2 - l2) * (u1 - p1)))
    return max(-1.0, low), min(1.0, high)


@dataclass(frozen=True)
class PairedTest:
    """Two classifiers on the same `n` test images, `first` (e.g. the study's previous technique) then `second`:
    the 2 × 2 table of right/wrong, McNemar's exact p-value, and accuracy(second) - accuracy(first) with its
    95 % interval (`paired_difference_interval`)."""

    n: int
    both: int  # right with both
    only_first: int  # right with first, wrong with second: what second lost
    only_second: int  # wrong with first, right with second: what second gained
    neither: int
    p_value: float
    difference: float
    ci95_low: float
    ci95_high: float

    @property
    def first_accuracy(self) -> float:
        return (self.both + self.only_first) / self.n

    @property
    def second_accuracy(self) -> float:
        return (self.both + self.only_second) / self.n

    def as_dict(self) -> dict:
        return asdict(self)


def paired_test(first_correct: Sequence[bool], second_correct: Sequence[bool]) -> PairedTest:
    """The paired comparison of two classifiers from their per-image correctness, in the same image order."""
    first, second = np.asarray(first_correct, dtype=bool), np.asarray(second_correct, dtype=bool)
    if first.shape != second.shape or first.ndim != 1 or len(first) == 0:
        raise ValueError(f"paired_test needs two equally long, non-empty lists; got {first.shape} and {second.shape}")
    both, neither = int((first & second).sum()), int((~first & ~second).sum())
    only_first, only_second = int((first & ~second).sum()), int((~first & second).sum())
    low, high = paired_difference_interval(both, only_first, only_second, neither)
    return PairedTest(
        n=len(first),
        both=both,
        only_first=only_first,
        only_second=only_second,
        neither=neither,
        p_value=mcnemar_exact(only_first, only_second),
        difference=(only_second - only_first) / len(first),
        ci95_low=low,
        ci95_high=high,
    )


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """The mean of independent replicates (one value per seed) and its Student t interval (n - 1 degrees of
    freedom); the interval is NaN for a single value, which says nothing about the spread."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_interval needs at least one value")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    sem = statistics.stdev(values) / math.sqrt(len(values))
    if sem == 0:
        return mean, mean, mean
    from scipy import stats as scipy_stats  # here, as in mcnemar_exact: a data stage's start need not load it

    low, high = scipy_stats.t.interval(confidence, len(values) - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)

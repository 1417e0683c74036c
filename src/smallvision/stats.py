"""Statistics of test results: the Wilson interval of an accuracy and the confusion matrix."""

from __future__ import annotations

import math

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

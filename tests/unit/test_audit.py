"""The data audit: confident learning finds planted label flips, cosine similarity of the frozen base's features
finds planted near-copies (resized, recompressed, cropped) of training images in test, and the stage writes its
lists and counts."""

from __future__ import annotations

import numpy as np
import pytest

from smallvision import audit

PHOTO = 128  # px, the generated photos' side
FLIP_SHARE, TOP_SHARE = 0.02, 0.04


def clustered_features(n: int, classes: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Feature vectors in one noisy cluster per class (what a frozen base gives two separable classes)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 1.0
    labels = rng.integers(0, classes, n)
    return centres[labels] + rng.normal(size=(n, dim)), labels


def flip(labels: np.ndarray, share: float, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(labels), round(share * len(labels)), replace=False)
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, classes, len(flipped))) % classes
    return noisy, flipped


@pytest.mark.parametrize("classes", [2, 3])
def test_out_of_fold_confident_learning_ranks_the_flipped_labels_first(classes):
    feats, labels = clustered_features(2000, classes, 32, seed=classes)
    noisy, flipped = flip(labels, FLIP_SHARE, classes, seed=1)
    probs = audit.out_of_fold_probabilities(feats, noisy, folds=5, regularisation=1.0, max_iter=1000, seed=0)
    issues = audit.label_issues(noisy, probs)
    top = np.argsort(issues.quality, kind="stable")[: round(TOP_SHARE * len(noisy))]
    recovered = len(set(top) & set(flipped)) / len(flipped)
    assert recovered >= 0.8, recovered
    flagged = set(issues.ranked.tolist())
    assert len(set(flipped) & flagged) >= 0.8 * len(flipped)
    assert len(flagged - set(flipped)) <= len(flipped)  # few clean images doubted
    assert (issues.suggested[flipped] == labels[flipped]).mean() >= 0.8  # and the right label suggested


def test_an_image_is_never_scored_by_a_model_that_saw_it():
    """With features that identify each image but say nothing of its class (labels at random), in-fold scoring
    would memorise the labels; out of fold the probabilities stay at chance."""
    rng = np.random.default_rng(0)
    feats, labels = rng.normal(size=(400, 600)), rng.integers(0, 2, 400)
    probs = audit.out_of_fold_probabilities(feats, labels, folds=4, regularisation=100.0, max_iter=2000, seed=0)
    assert abs((probs.argmax(1) == labels).mean() - 0.5) < 0.1


def test_near_duplicates_are_pairs_at_or_above_the_threshold_most_similar_first():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(2500, 16))  # more rows than one block of the similarity matrix
    feats[2400] = feats[3] * 5 + 0.01  # scale does not matter: cosine
    feats[2499] = feats[1500] + rng.normal(size=16) * 0.2
    pairs = audit.near_duplicates(feats, 0.97)
    assert [(i, j) for i, j, _ in pairs] == [(3, 2400), (1500, 2499)]
    assert pairs[0][2] > pairs[1][2] >= 0.97


# --------------------------------------------------------------------------- the reviewed exclusion list

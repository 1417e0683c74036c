"""The feature cache: its key and its reuse by feature-extract training."""

from __future__ import annotations

import numpy as np
from helpers.study import config, paths

from smallvision.data.images import Resize
from smallvision.features import features_key
from smallvision.training import train_technique


def test_feature_extract_caches_features_and_reuses_them(study, monkeypatch):
    cfg = config("technique=feature_extract")
    metrics = train_technique(cfg, paths(study, "feature_extract"), progress=False)
    assert metrics["best_val_accuracy"] >= 0.75
    cached = list((study / "data/features/efficientnet_lite0").glob("features-*.npy"))
    assert len(cached) == 1 and np.load(cached[0]).shape == (200, 1280)
    mtime = cached[0].stat().st_mtime_ns

    from smallvision import features

    def no_extraction(*args, **kwargs):
        raise AssertionError("features were extracted again although the cache is valid")

    monkeypatch.setattr(features.FeatureExtractor, "predict_step", no_extraction)
    train_technique(
        config("technique=feature_extract", "techniques.feature_extract.epochs=1"),
        paths(study, "fe_again"),
        progress=False,
    )
    assert cached[0].stat().st_mtime_ns == mtime
    # a change that changes the features (image size) invalidates the cache: a new file, extraction runs
    monkeypatch.undo()
    train_technique(
        config(
            "technique=feature_extract",
            "techniques.feature_extract.epochs=1",
            "techniques.feature_extract.image_size=72",
        ),
        paths(study, "fe_72"),
        progress=False,
    )
    assert len(list((study / "data/features/efficientnet_lite0").glob("features-*.npy"))) == 2


def test_feature_cache_key_covers_what_changes_the_features():
    bb = config().backbone
    r64 = Resize(64, "crop", 0.875, "bicubic")
    key = features_key(bb, r64, "avg", "manifest", "32-true")
    assert key == features_key(bb.model_copy(), Resize(64, "crop", 0.875, "bicubic"), "avg", "manifest", "32-true")
    changed = [
        features_key(bb.model_copy(update={"mean": [0.4, 0.5, 0.5]}), r64, "avg", "manifest", "32-true"),
        features_key(bb.model_copy(update={"std": [0.2, 0.2, 0.2]}), r64, "avg", "manifest", "32-true"),
        features_key(bb, r64, "avg", "manifest", "bf16-mixed"),
        features_key(bb, Resize(72, "crop", 0.875, "bicubic"), "avg", "manifest", "32-true"),
        features_key(bb, Resize(64, "crop", 0.9, "bicubic"), "avg", "manifest", "32-true"),
        features_key(bb, Resize(64, "squash", 1.0, "bicubic"), "avg", "manifest", "32-true"),
        features_key(bb, r64, "flatten", "manifest", "32-true"),
        features_key(bb, r64, "avg", "other", "32-true"),
    ]
    assert len({key, *changed}) == 9

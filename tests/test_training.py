"""Each technique trains for real on generated images, keeps its frozen/unfrozen guarantees, and writes
exact test metrics. Images are 64 px synthetic shapes; every test runs in seconds on a CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers.study import config, make_dataset, paths

from smallvision import networks
from smallvision.data.images import Resize
from smallvision.errors import ConfigError, WeightsUnavailableError
from smallvision.features import features_key
from smallvision.models import backbones
from smallvision.models.convnet import SmallConvNet
from smallvision.settings import technique as validate
from smallvision.stats import wilson_interval
from smallvision.training import train_technique


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("study"))


def test_small_convnet_matches_the_book():
    assert sum(p.numel() for p in SmallConvNet(150, 1).parameters()) == 3_453_121
    assert SmallConvNet(150, 3)(torch.zeros(2, 3, 150, 150)).shape == (2, 3)
    with pytest.raises(ConfigError, match="too small"):
        SmallConvNet(32, 1)


def test_wilson_interval_known_values():
    low, high = wilson_interval(90, 100)
    assert low == pytest.approx(0.8256, abs=1e-4) and high == pytest.approx(0.9448, abs=1e-4)


def test_baseline_learns_and_writes_exact_metrics(study):
    cfg = config("technique=baseline", "techniques.baseline.epochs=8")
    metrics = train_technique(cfg, paths(study, "baseline"), progress=False)
    out = study / "models" / "baseline"
    history = [line.split(",") for line in (out / "history.csv").read_text().splitlines()[1:]]
    assert len(history) == 8
    assert max(float(h[4]) for h in history) >= 0.75  # validation accuracy well above chance (0.5)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == metrics
    assert saved["test_images"] == 50  # 25 % of 2 x 100 images, each counted once
    assert saved["ci95_low"] <= saved["test_accuracy"] <= saved["ci95_high"]
    confusion = json.loads((out / "confusion.json").read_text())
    assert np.sum(confusion["matrix"]) == 50 and confusion["classes"] == ["circle", "square"]
    assert np.trace(confusion["matrix"]) == saved["test_correct"]
    assert len((out / "test_predictions.csv").read_text().splitlines()) == 51


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


def _pretrained_base(cfg) -> dict:
    return {k: v.clone() for k, v in backbones.create_backbone(cfg["backbone"]).state_dict().items()}


def _trained_base(ckpt) -> dict:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return {k.removeprefix("net.base."): v for k, v in state.items() if k.startswith("net.base.")}


def test_feature_cache_key_covers_what_changes_the_features():
    bb = config()["backbone"]
    r64 = Resize(64, "crop", 0.875, "bicubic")
    key = features_key(bb, r64, "avg", "manifest", "32-true")
    assert key == features_key(dict(bb), Resize(64, "crop", 0.875, "bicubic"), "avg", "manifest", "32-true")
    changed = [
        features_key({**bb, "mean": [0.4, 0.5, 0.5]}, r64, "avg", "manifest", "32-true"),
        features_key({**bb, "std": [0.2, 0.2, 0.2]}, r64, "avg", "manifest", "32-true"),
        features_key(bb, r64, "avg", "manifest", "bf16-mixed"),
        features_key(bb, Resize(72, "crop", 0.875, "bicubic"), "avg", "manifest", "32-true"),
        features_key(bb, Resize(64, "crop", 0.9, "bicubic"), "avg", "manifest", "32-true"),
        features_key(bb, Resize(64, "squash", 1.0, "bicubic"), "avg", "manifest", "32-true"),
        features_key(bb, r64, "flatten", "manifest", "32-true"),
        features_key(bb, r64, "avg", "other", "32-true"),
    ]
    assert len({key, *changed}) == 9


def test_feature_extract_augmented_mode_augments_and_leaves_the_base_bit_for_bit_unchanged(study, monkeypatch):
    from smallvision.modules import classifier

    calls = []
    monkeypatch.setattr(classifier, "random_affine", lambda x, *a, **k: calls.append(len(x)) or x)
    cfg = config(
        "technique=feature_extract", "techniques.feature_extract.mode=augmented", "techniques.feature_extract.epochs=2"
    )
    train_technique(cfg, paths(study, "fe_augmented"), progress=False)
    assert sum(calls) == 2 * 100  # every training image, each epoch; nothing else
    before, after = _pretrained_base(cfg), _trained_base(study / "models/fe_augmented/best.ckpt")
    assert before.keys() == after.keys()
    assert any("running_mean" in k for k in after)  # BatchNorm statistics are part of the check
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == []


def test_fine_tune_changes_only_the_unfrozen_top(study):
    if not (study / "models/feature_extract/best.ckpt").exists():
        train_technique(config("technique=feature_extract"), paths(study, "feature_extract"), progress=False)
    cfg = config("technique=fine_tune")
    metrics = train_technique(cfg, paths(study, "fine_tune"), progress=False)
    assert metrics["best_val_accuracy"] >= 0.75
    base = backbones.create_backbone(cfg["backbone"])
    top = {id(p) for m in backbones.top_blocks(base, 1) for p in m.parameters()}
    top_names = {n for n, p in base.named_parameters() if id(p) in top}
    before, after = _pretrained_base(cfg), _trained_base(study / "models/fine_tune/best.ckpt")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "fine-tune changed nothing"
    assert changed <= top_names  # frozen weights and every BN statistic unchanged
    assert any(k in changed for k in top_names)


def test_fine_tune_starts_from_a_head_of_any_configured_size(study):
    """fine-tune's head follows techniques.feature_extract.head, and it can start from any feature-extract
    checkpoint (a sweep passes its own job's)."""
    units = ("techniques.feature_extract.head.units=32", "techniques.feature_extract.epochs=1")
    train_technique(config("technique=feature_extract", *units), paths(study, "fe_32"), progress=False)
    fine = paths(study, "ft_32")
    fine.head_checkpoint = study / "models" / "fe_32" / "best.ckpt"
    metrics = train_technique(
        config("technique=fine_tune", *units, "techniques.fine_tune.epochs=1"), fine, progress=False
    )
    assert metrics["test_images"] == 50
    net, spec = networks.load_checkpoint(study / "models" / "ft_32" / "best.ckpt")
    assert spec["head"]["units"] == 32 and net.head.net[1].out_features == 32


def test_fine_tune_needs_the_feature_extract_head(tmp_path):
    root = make_dataset(tmp_path, per_class=12)
    with pytest.raises(Exception, match="feature-extract"):
        train_technique(config("technique=fine_tune"), paths(root, "fine_tune"), progress=False)


def test_checkpoint_rebuilds_the_trained_network(study):
    ckpt = study / "models/baseline/best.ckpt"
    if not ckpt.exists():
        pytest.skip("needs the baseline test")
    net, spec = networks.load_checkpoint(ckpt)
    assert spec["classes"] == ["circle", "square"] and spec["network"] == "scratch"
    assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 1)


def test_three_classes_use_softmax(tmp_path):
    root = make_dataset(tmp_path, per_class=30, classes=("circle", "square", "triangle"))
    metrics = train_technique(
        config("technique=baseline", "techniques.baseline.epochs=1"), paths(root, "baseline"), progress=False
    )
    assert metrics["test_images"] == 3 * 30 // 4 * 1 + 3 or metrics["test_images"] > 0
    _, spec = networks.load_checkpoint(root / "models/baseline/best.ckpt")
    assert spec["num_outputs"] == 3


@pytest.mark.parametrize(
    "override, key",
    [
        ("techniques.baseline.optimizer.lr=0", "techniques.baseline.optimizer.lr"),
        ("techniques.baseline.optimizer.lr=-1e-3", "techniques.baseline.optimizer.lr"),
        ("techniques.baseline.batch_size=0", "techniques.baseline.batch_size"),
        ("techniques.baseline.epochs=-2", "techniques.baseline.epochs"),
        ("technique=nonsense", "technique"),
        ("augmentation.zoom_range=-0.2", "augmentation.zoom_range"),
        ("+augmentation.rotaton_range=30", "rotaton_range"),  # a misspelt key: a clear error, not a TypeError
    ],
)
def test_bad_config_fails_before_work_naming_the_key(override, key):
    cfg = config(override, "techniques.baseline.augment=true")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(cfg)


def test_missing_pretrained_weights_stop_the_stage(study):
    cfg = config("technique=feature_extract", "backbone=vgg16", "backbone.weights.file=/nonexistent/vgg16.pth")
    with pytest.raises(WeightsUnavailableError, match="/nonexistent/vgg16.pth"):
        train_technique(cfg, paths(study, "fe_vgg"), progress=False)
    assert not (study / "models/fe_vgg/metrics.json").exists()


@pytest.mark.slow
def test_compiled_training_gives_a_loadable_checkpoint(study):
    """trainer.compile=true compiles the network in place: same state_dict keys, so the checkpoint reloads."""
    cfg = config("technique=baseline", "trainer.compile=true", "techniques.baseline.epochs=1")
    metrics = train_technique(cfg, paths(study, "compiled"), progress=False)
    assert metrics["test_images"] == 50
    net, spec = networks.load_checkpoint(study / "models" / "compiled" / "best.ckpt")
    assert isinstance(net, SmallConvNet) and spec["network"] == "scratch"

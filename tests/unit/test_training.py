"""Each technique trains for real on generated images, keeps its frozen/unfrozen guarantees, and writes
exact test metrics. Images are 64 px synthetic shapes; every test runs in seconds on a CPU."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.study import (
    CONF,
    TECHNIQUES,
    Weights,
    add_callbacks,
    class_probabilities,
    config,
    make_dataset,
    paths,
    small_vgg_classifier,
    split_input,
)
from hydra import compose, initialize_config_dir

from smallvision import networks, predict, training
from smallvision.data.preprocess import backbone_normalisation
from smallvision.entrypoints import load_settings
from smallvision.errors import ConfigError, WeightsUnavailableError
from smallvision.models import backbones
from smallvision.models.convnet import SmallConvNet
from smallvision.schema import Settings
from smallvision.stats import wilson_interval
from smallvision.training import train_technique


def _preset(name: str) -> Settings:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return load_settings(compose("config", overrides=[f"preset={name}"]))


def validate(settings: Settings, technique: str) -> None:
    """The checks a training job of `technique` runs when its settings are loaded (memory included)."""
    load_settings({**settings.model_dump(), "technique": technique}, training=True)


def _settings(cfg: Settings, technique: str) -> tuple:
    t = cfg.techniques[technique]
    return t.image_size, t.batch_size, t.epochs, t.optimizer.name, t.optimizer.lr, t.augment


def test_the_default_preset_is_the_books_study_on_efficientnet_lite0():
    """README "The study" and "Presets": the book's optimisers, learning rates, batch sizes, epochs and split."""
    cfg = _preset("default")
    t = cfg.techniques
    assert cfg.data.split.amounts() == {"train": 1000, "val": 500, "test": 500}
    assert _settings(cfg, "baseline") == (150, 20, 30, "rmsprop", 1e-4, False) and t["baseline"].dropout == 0
    assert _settings(cfg, "augment") == (150, 32, 100, "rmsprop", 1e-4, True) and t["augment"].dropout == 0.5
    assert _settings(cfg, "feature_extract")[:5] == (224, 20, 30, "rmsprop", 2e-5)
    assert t["feature_extract"].mode == "cached"
    assert t["feature_extract"].head.model_dump() == t["fine_tune"].head.model_dump()
    assert t["fine_tune"].head.model_dump() == {"units": 256, "dropout": 0.5, "pool": "avg"}
    assert _settings(cfg, "fine_tune") == (224, 20, 100, "rmsprop", 1e-5, True) and t["fine_tune"].unfreeze_blocks == 1
    bb = cfg.backbone
    assert (bb.name, bb.image_size, bb.mean, bb.std) == ("efficientnet_lite0", 224, None, None)
    assert backbone_normalisation(bb) == ([0.5] * 3, [0.5] * 3)  # null: timm's pretrained config
    assert bb.weights.source == "package"  # offline: the weights come with the install
    # trained on augmented images: augment and fine-tune; feature-extract only in its augmented mode
    picked = [cfg.model_copy(update={"technique": name}) for name in TECHNIQUES]
    assert [training.augmentation(c) is not None for c in picked] == [False, True, False, True]
    augmented_fe = t["feature_extract"].model_copy(update={"mode": "augmented"})
    augmented = cfg.model_copy(
        update={"technique": "feature_extract", "techniques": {**t, "feature_extract": augmented_fe}}
    )
    assert training.augmentation(augmented) is not None
    for name in TECHNIQUES:
        validate(cfg, name)  # each technique's settings pass the checks


def test_the_other_presets_are_what_the_readme_says():
    vgg = _preset("chollet_vgg16")
    assert (vgg.backbone.name, vgg.backbone.image_size, vgg.backbone.head_pool) == (
        "vgg16",
        150,
        "flatten",
    )
    assert vgg.techniques["feature_extract"].image_size == vgg.techniques["fine_tune"].image_size == 150
    quick = _preset("quick")
    assert [_settings(quick, name)[::2] for name in TECHNIQUES] == [
        (96, 10, 1e-4),
        (96, 40, 1e-4),
        (160, 30, 2e-5),
        (160, 2, 1e-5),
    ]  # 96 px and 10/40 epochs for the scratch convnets, 160 px and 2 fine-tune epochs for the transfer stages
    smoke = _preset("smoke")
    assert smoke.data.name == "synthetic" and smoke.trainer.progress is False
    playbook = _preset("playbook")
    assert playbook.preset == "playbook"
    bb = playbook.backbone
    assert (bb.name, bb.image_size, bb.resize, bb.unfreeze_blocks) == (
        "efficientnet_lite2",
        260,
        "crop",
        "all",
    )
    assert [_settings(playbook, name)[:5] for name in TECHNIQUES] == [
        _settings(quick, "baseline")[:5],
        _settings(quick, "augment")[:5],  # the scratch convnets as quick
        (260, 20, 20, "adamw", 3e-4),
        (260, 20, 2, "adamw", 1e-4),
    ]
    fe, ft = playbook.techniques["feature_extract"], playbook.techniques["fine_tune"]
    assert fe.cached_flips and fe.tta and ft.tta and ft.batchnorm == "frozen"
    assert (ft.optimizer.layer_decay, ft.optimizer.weight_decay, ft.lr_schedule.model_dump()) == (
        0.7,
        0.01,
        {"name": "cosine", "warmup_epochs": 1},
    )
    for cfg in (vgg, quick, smoke, playbook):
        for name in TECHNIQUES:
            validate(cfg, name)


def test_wilson_interval_known_values():
    low, high = wilson_interval(90, 100)
    assert low == pytest.approx(0.8256, abs=1e-4) and high == pytest.approx(0.9448, abs=1e-4)


@pytest.fixture(scope="module")
def baseline(study) -> dict:
    """The baseline trained 8 epochs on the study's images (models/baseline); its metrics."""
    return train_technique(
        config("technique=baseline", "techniques.baseline.epochs=8"), paths(study, "baseline"), progress=False
    )


def test_baseline_learns_and_writes_exact_metrics(study, baseline):
    metrics = baseline
    out = study / "models" / "baseline"
    history = [line.split(",") for line in (out / "history.csv").read_text().splitlines()[1:]]
    assert len(history) == 8
    assert max(float(h[4]) for h in history) >= 0.75  # validation accuracy well above chance (0.5)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == metrics
    assert saved["test_images"] == 50  # 25 % of 2 x 100 images, each counted once
    assert saved["test_accuracy"] == saved["test_correct"] / 50
    assert (saved["ci95_low"], saved["ci95_high"]) == wilson_interval(saved["test_correct"], 50)
    confusion = json.loads((out / "confusion.json").read_text())
    assert np.sum(confusion["matrix"]) == 50 and confusion["classes"] == ["circle", "square"]
    assert np.trace(confusion["matrix"]) == saved["test_correct"]
    assert len((out / "test_predictions.csv").read_text().splitlines()) == 51
    # no resume: best.ckpt holds the best-validation weights, not the training state (README "A run killed ...")
    assert "optimizer_states" not in torch.load(out / "best.ckpt", map_location="cpu", weights_only=True)


def _pretrained_base(cfg) -> dict:
    return {k: v.clone() for k, v in backbones.create_backbone(cfg.backbone.model_dump()).state_dict().items()}


def _trained_base(ckpt) -> dict:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return {k.removeprefix("net.base."): v for k, v in state.items() if k.startswith("net.base.")}


def test_feature_extract_augmented_mode_augments_and_leaves_the_base_bit_for_bit_unchanged(study, monkeypatch):
    from smallvision.modules import classifier

    real_affine, changed_pixels = classifier.random_affine, []

    def spy(x, *args, **kwargs):  # the real augmentation, watched: how many images, and how much it changed them
        out = real_affine(x, *args, **kwargs)
        changed_pixels.extend((out != x).flatten(1).float().mean(1).tolist())
        return out

    monkeypatch.setattr(classifier, "random_affine", spy)
    cfg = config(
        "technique=feature_extract", "techniques.feature_extract.mode=augmented", "techniques.feature_extract.epochs=2"
    )
    train_technique(cfg, paths(study, "fe_augmented"), progress=False)
    assert len(changed_pixels) == 2 * 100  # every training image, each epoch; nothing else
    # the book's transforms change nearly every pixel of every (textured) generated image: > 99 % measured
    assert min(changed_pixels) > 0.5
    before, after = _pretrained_base(cfg), _trained_base(study / "models/fe_augmented/best.ckpt")
    assert before.keys() == after.keys()
    assert any("running_mean" in k for k in after)  # BatchNorm statistics are part of the check
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == []


def test_fine_tune_changes_only_the_unfrozen_top(study, monkeypatch):
    if not (study / "models/feature_extract/best.ckpt").exists():
        train_technique(config("technique=feature_extract"), paths(study, "feature_extract"), progress=False)
    cfg = config("technique=fine_tune")
    trained = Weights("base")  # the weights training left (best.ckpt may keep the start: unit/test_starting_point.py)
    add_callbacks(monkeypatch, trained)
    metrics = train_technique(cfg, paths(study, "fine_tune"), progress=False)
    assert metrics["best_val_accuracy"] >= 0.75
    base = backbones.create_backbone(cfg.backbone.model_dump())
    top = {id(p) for m in backbones.top_blocks(base, 1) for p in m.parameters()}
    top_names = {n for n, p in base.named_parameters() if id(p) in top}
    before, after = _pretrained_base(cfg), trained.end
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "fine-tune changed nothing"
    assert changed <= top_names  # frozen weights and every BN statistic unchanged
    assert any(k in changed for k in top_names)


def test_fine_tune_starts_from_a_head_of_any_configured_size(study, monkeypatch):
    """fine-tune's head follows techniques.feature_extract.head, and it can start from any feature-extract
    checkpoint (a sweep passes its own job's)."""
    units = ("techniques.feature_extract.head.units=32", "techniques.feature_extract.epochs=1")
    train_technique(config("technique=feature_extract", *units), paths(study, "fe_32"), progress=False)
    fine = paths(study, "ft_32")
    fine.head_checkpoint = study / "models" / "fe_32" / "best.ckpt"
    head = Weights("head")
    add_callbacks(monkeypatch, head)
    metrics = train_technique(
        config("technique=fine_tune", *units, "techniques.fine_tune.epochs=1"), fine, progress=False
    )
    assert metrics["test_images"] == 50
    trained_head = torch.load(fine.head_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    trained_head = {k.removeprefix("net."): v for k, v in trained_head.items()}
    assert head.start.keys() == trained_head.keys()
    assert all(torch.equal(head.start[k], trained_head[k]) for k in trained_head)  # the head it starts from
    net, spec = networks.load_checkpoint(study / "models" / "ft_32" / "best.ckpt")
    assert spec["head"]["units"] == 32 and net.head.net[1].out_features == 32


def test_checkpoint_rebuilds_the_trained_network(study, baseline):
    net, spec = networks.load_checkpoint(study / "models/baseline/best.ckpt")
    assert spec["classes"] == ["circle", "square"] and spec["network"] == "scratch"
    assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 1)


def _read_predictions(out) -> list[dict]:
    with open(out / "test_predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_three_classes_use_one_logit_each_a_softmax_and_cross_entropy(tmp_path):
    root = make_dataset(tmp_path, per_class=30, classes=("circle", "square", "triangle"))
    cfg = config("technique=baseline", "techniques.baseline.epochs=1", "trainer.precision=32-true")
    metrics = train_technique(cfg, paths(root, "baseline"), progress=False)
    assert metrics["test_images"] == 3 * 7  # 25 % of 30 per class, rounded down, each image once
    net, spec = networks.load_checkpoint(root / "models/baseline/best.ckpt")
    assert spec["num_outputs"] == 3 and spec["classes"] == ["circle", "square", "triangle"]
    records, x = split_input(root, spec)
    with torch.no_grad():
        logits = net.eval()(x).double().numpy()
    assert logits.shape == (21, 3)
    probs = class_probabilities(net, x)  # a softmax, by hand
    assert np.allclose(probs.sum(1), 1)
    assert np.allclose(predict.probabilities(net, x).numpy(), probs, atol=1e-5)  # what `predict` reports
    # the test loss is the mean cross-entropy -log softmax(z)[y] (a sigmoid per logit would give another number)
    y = np.array([spec["classes"].index(r.label) for r in records])
    cross_entropy = -np.log(probs[np.arange(21), y])
    assert metrics["test_loss"] == pytest.approx(cross_entropy.mean(), rel=1e-4)
    rows = _read_predictions(root / "models/baseline")
    assert [r["predicted"] for r in rows] == [spec["classes"][k] for k in probs.argmax(1)]
    assert [float(r["probability"]) for r in rows] == pytest.approx(probs.max(1).tolist(), abs=1e-5)


def test_the_test_score_is_that_of_the_best_validation_checkpoint(study, monkeypatch):
    """Validation accuracy is scripted to peak at epoch 2 of 4; the test split must then be evaluated with epoch 2's
    weights (best.ckpt), not the last epoch's: reloading best.ckpt gives test_predictions.csv, test_correct and
    test_loss (the mean binary cross-entropy of one logit) exactly, the last weights do not."""
    from smallvision.modules.classifier import ClassifierModule

    scripted = iter([0.6, 0.9, 0.7, 0.8])
    real_summary = ClassifierModule._summary

    tested = []

    def summary(self, results):  # validation during fit gets the scripted accuracy; the test split its real one
        real = real_summary(self, results)
        if self.trainer.state.fn == "fit":
            return {**real, "acc": next(scripted)}
        tested.append(len(results["y"]))
        return real

    weights = Weights()
    monkeypatch.setattr(ClassifierModule, "_summary", summary)
    add_callbacks(monkeypatch, weights)
    cfg = config(
        "technique=baseline",
        "techniques.baseline.epochs=4",
        "techniques.baseline.optimizer.lr=1e-3",
        "trainer.precision=32-true",
    )
    metrics = train_technique(cfg, paths(study, "best_of_4"), progress=False)
    out = study / "models" / "best_of_4"
    assert (metrics["best_epoch"], metrics["best_val_accuracy"], metrics["epochs"]) == (2, 0.9, 4)
    assert tested == [50]  # the test split evaluated once, with the chosen checkpoint
    assert [line.split(",")[4] for line in (out / "history.csv").read_text().splitlines()[1:]] == [
        "0.600000",
        "0.900000",
        "0.700000",
        "0.800000",
    ]

    net, spec = networks.load_checkpoint(out / "best.ckpt")
    records, x = split_input(study, spec)
    probs = class_probabilities(net, x)
    rows = _read_predictions(out)
    assert [r["path"] for r in rows] == [r.path for r in records]
    assert [r["predicted"] for r in rows] == [spec["classes"][k] for k in probs.argmax(1)]
    assert [float(r["probability"]) for r in rows] == pytest.approx(probs.max(1).tolist(), abs=1e-5)
    y = np.array([r.target for r in records])
    assert metrics["test_correct"] == int((probs.argmax(1) == y).sum())
    assert metrics["test_loss"] == pytest.approx(-np.log(probs[np.arange(len(y)), y]).mean(), rel=1e-4)

    net.load_state_dict(weights.end)  # the last epoch's weights: other probabilities, so the check above can fail
    assert np.abs(class_probabilities(net, x).max(1) - probs.max(1)).max() > 1e-3


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
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config(override, "techniques.baseline.augment=true")


def test_missing_pretrained_weights_stop_the_stage(study):
    cfg = config("technique=feature_extract", "backbone=vgg16", "backbone.weights.file=/nonexistent/vgg16.pth")
    with pytest.raises(WeightsUnavailableError, match="/nonexistent/vgg16.pth"):
        train_technique(cfg, paths(study, "fe_vgg"), progress=False)
    assert not (study / "models/fe_vgg/metrics.json").exists()


def test_feature_extract_trains_on_vgg16_from_a_torchvision_file(study, tmp_path):
    """The chollet_vgg16 preset's backbone: a torchvision VGG16 state dict file (made here: torchvision's conv base,
    random weights) under the book's Flatten head; 32 px images keep it fast (the preset's 150 px: 4x4x512)."""
    from torchvision.models import vgg as tv_vgg

    conv_base = tv_vgg.make_layers(tv_vgg.cfgs["D"]).state_dict()
    weights = tmp_path / "vgg16-397923af.pth"
    torch.save({f"features.{key}": value for key, value in conv_base.items()}, weights)
    cfg = config(
        "technique=feature_extract",
        "backbone=vgg16",
        f"backbone.weights.file={weights}",
        "techniques.feature_extract.image_size=32",
        "techniques.feature_extract.epochs=1",
    )
    assert cfg.techniques["feature_extract"].head.pool == "flatten"
    with small_vgg_classifier():
        metrics = train_technique(cfg, paths(study, "fe_vgg16"), progress=False)
        net, spec = networks.load_checkpoint(study / "models/fe_vgg16/best.ckpt")  # the head on its VGG16 base
    assert metrics["backbone"] == "vgg16" and metrics["test_images"] == 50
    assert spec["head"]["in_features"] == 512 * 1 * 1  # 32 px through five 2x2 pools, flattened
    assert torch.equal(net.base.features[0].weight, conv_base["0.weight"])  # the file's weights, not random ones


@pytest.mark.slow
def test_compiled_training_gives_a_loadable_checkpoint(study):
    """trainer.compile=true compiles the network in place: same state_dict keys, so the checkpoint reloads."""
    cfg = config("technique=baseline", "trainer.compile=true", "techniques.baseline.epochs=1")
    metrics = train_technique(cfg, paths(study, "compiled"), progress=False)
    assert metrics["test_images"] == 50
    net, spec = networks.load_checkpoint(study / "models" / "compiled" / "best.ckpt")
    assert isinstance(net, SmallConvNet) and spec["network"] == "scratch"


# -- the same seed gives the same outputs ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("repeat"), per_class=40)


def _state(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def head(data) -> Path:
    """A feature-extract checkpoint for fine-tune to start from."""
    cfg = config("technique=feature_extract", "techniques.feature_extract.epochs=1")
    train_technique(cfg, paths(data, "fe_head"), progress=False)
    return data / "models" / "fe_head" / "best.ckpt"


@pytest.mark.parametrize("technique", ["baseline", "augment", "feature_extract", "fine_tune"])
def test_same_seed_twice_gives_identical_outputs(data, head, technique):
    cfg = config(f"technique={technique}", f"techniques.{technique}.epochs=2")
    runs = [data / "models" / f"{technique}_{i}" for i in (1, 2)]
    metrics = []
    for run_dir in runs:
        where = paths(data, run_dir.name)
        where.head_checkpoint = head
        metrics.append(train_technique(cfg, where, progress=False))
    for m in metrics:
        m.pop("wall_time_s"), m.pop("trained_at"), m.pop("seconds_per_epoch")  # when and how fast, not what
    assert metrics[0] == metrics[1]
    assert metrics[0]["test_images"] == 20 and metrics[0]["seed"] == 42
    for name in ("test_predictions.csv", "history.csv", "confusion.json"):
        assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes(), name
    first, second = _state(runs[0] / "best.ckpt"), _state(runs[1] / "best.ckpt")
    assert first.keys() == second.keys()
    assert [k for k in first if not torch.equal(first[k], second[k])] == []  # bit for bit, on CPU


def test_a_head_trained_right_after_extracting_its_features_is_the_one_trained_on_them_cached(tmp_path):
    """Extracting features must not move the random state training then starts from: the same seed gives the same
    head whether the feature cache was cold (extracted in this run) or warm (a rerun)."""
    data = make_dataset(tmp_path, per_class=20)
    cfg = config("technique=feature_extract", "techniques.feature_extract.epochs=2")
    cold = train_technique(cfg, paths(data, "fe_cold"), progress=False)
    warm = train_technique(cfg, paths(data, "fe_warm"), progress=False)
    for m in (cold, warm):
        m.pop("wall_time_s"), m.pop("trained_at"), m.pop("seconds_per_epoch")
    assert cold == warm
    first, second = _state(data / "models/fe_cold/best.ckpt"), _state(data / "models/fe_warm/best.ckpt")
    assert [k for k in first if not torch.equal(first[k], second[k])] == []


def test_another_seed_gives_other_weights(data):
    a = train_technique(
        config("technique=baseline", "techniques.baseline.epochs=1"), paths(data, "seed_a"), progress=False
    )
    b = train_technique(
        config("technique=baseline", "techniques.baseline.epochs=1", "seed=7"), paths(data, "seed_b"), progress=False
    )
    assert a["seed"] != b["seed"]
    first, second = _state(data / "models/seed_a/best.ckpt"), _state(data / "models/seed_b/best.ckpt")
    assert any(not torch.equal(first[k], second[k]) for k in first)  # the seed is what made the runs equal


def test_a_direct_run_deletes_the_old_metrics_json_first_and_writes_the_new_one_last_and_atomically(data, monkeypatch):
    """Run directly (no DVC to remove outputs), a run that dies mid-training leaves no metrics.json, even where a
    finished run had left one; a run that finishes writes it last, by a rename (never half-written)."""
    from smallvision import files
    from smallvision.modules.classifier import ClassifierModule

    out = data / "models" / "direct"
    out.mkdir(parents=True)
    (out / "metrics.json").write_text('{"test_accuracy": 1.0}')  # a finished earlier run's
    real_step = ClassifierModule.training_step

    def dies_in_epoch_2(self, batch, batch_idx):  # as a kill or an out-of-memory would, after epoch 1's checkpoint
        if self.current_epoch == 1:
            raise MemoryError("killed mid-training")
        return real_step(self, batch, batch_idx)

    cfg = config("technique=baseline", "techniques.baseline.epochs=3")
    with monkeypatch.context() as patch:
        patch.setattr(ClassifierModule, "training_step", dies_in_epoch_2)
        with pytest.raises(MemoryError, match="killed mid-training"):
            train_technique(cfg, paths(data, "direct"), progress=False)
    assert (out / "best.ckpt").exists()  # epoch 1's weights are there ...
    assert not (out / "metrics.json").exists()  # ... but nothing says finished

    renamed = []
    real_replace = files.os.replace

    def replace(src, dst):
        renamed.append((Path(src).name, Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    metrics = train_technique(cfg, paths(data, "direct"), progress=False)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    targets = [dst for _, dst in renamed]
    assert set(targets) >= {"history.csv", "test_predictions.csv", "confusion.json", "metrics.json"}
    assert targets[-1] == "metrics.json" and targets.count("metrics.json") == 1  # last, once
    assert renamed[-1][0].startswith(".metrics.")  # from a hidden temporary file beside it
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "techniques.baseline.image_size=16",
            r"techniques\.baseline\.image_size=16 is too small for the small convnet",
        ),
        ("techniques.baseline.batch_size=-4", r"techniques\.baseline\.batch_size=-4 must be a positive integer"),
    ],
    ids=["image_size_too_small", "negative_batch_size"],
)
def test_a_config_the_model_cannot_take_stops_before_training(data, override, message, monkeypatch):
    from smallvision import training
    from smallvision.errors import ConfigError

    def no_heavy_work(*args, **kwargs):
        raise AssertionError("images were decoded before the config was checked")

    monkeypatch.setattr(training, "image_array", no_heavy_work)
    with pytest.raises(ConfigError, match=message):
        train_technique(config("technique=baseline", override), paths(data, "bad_config"), progress=False)
    assert not (data / "models" / "bad_config" / "metrics.json").exists()
    assert not (data / "models" / "bad_config" / "best.ckpt").exists()


# ----------------------------------------------------------------------------------------------- early stopping


def test_early_stopping_stops_at_the_patience(data):
    """A rate too small to move any weight leaves val_loss the same every epoch: epoch 1 is the best, and training
    stops once `patience` more epochs have not improved it."""
    cfg = config(
        "technique=baseline",
        "techniques.baseline.epochs=8",
        "techniques.baseline.optimizer.lr=1e-30",
        "techniques.baseline.early_stopping_patience=2",
    )
    metrics = train_technique(cfg, paths(data, "stopped"), progress=False)
    history = (data / "models/stopped/history.csv").read_text().splitlines()[1:]
    assert len(history) == metrics["epochs_run"] == 1 + 2 and metrics["epochs"] == 8
    assert len({line.split(",")[3] for line in history}) == 1  # the same val_loss each epoch


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("techniques.fine_tune.optimizer.layer_decay=0", "layer_decay"),
        ("techniques.fine_tune.optimizer.weight_decay=-1", "weight_decay"),
        ("techniques.fine_tune.lr_schedule.name=linear", "lr_schedule.name"),
        ("techniques.fine_tune.lr_schedule.warmup_epochs=5", "warmup_epochs"),  # the smoke preset trains 1 epoch
        ("techniques.fine_tune.early_stopping_patience=0", "early_stopping_patience"),
        ("techniques.fine_tune.unfreeze_blocks=top", "unfreeze_blocks"),
        ("techniques.fine_tune.tta=maybe", "tta"),
    ],
)
def test_bad_playbook_settings_fail_before_work(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config("technique=fine_tune", override)

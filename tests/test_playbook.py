"""The fine-tuning playbook past the book, each option alone: unfreezing the whole base, layer-wise learning rates,
BatchNorm statistics frozen or re-estimated, AdamW with warm-up and cosine decay, early stopping, and test-time
augmentation over the horizontal flip (reported beside the plain test accuracy, never instead of it)."""

from __future__ import annotations

import copy

import lightning as L
import numpy as np
import pytest
import torch
from helpers.study import config, make_dataset, paths
from torch import nn

from smallvision.data.datamodule import ArrayDataModule, SplitArrays
from smallvision.errors import ConfigError
from smallvision.models import backbones as B
from smallvision.models.convnet import SmallConvNet
from smallvision.models.heads import DenseHead, TransferNet
from smallvision.modules.classifier import ClassifierModule, ImageInput
from smallvision.modules.optim import lr_scheduler, make_optimizer, param_groups
from smallvision.networks import class_probabilities
from smallvision.schema import LrSchedule, Optimizer
from smallvision.training import train_technique

OPTIMIZER = {"name": "adamw", "lr": 1e-3, "alpha": 0.9, "eps": 1e-7, "momentum": 0.0, "weight_decay": 0.05}


def optimizer(**changes) -> Optimizer:
    """The optimizer settings OPTIMIZER with `changes`."""
    return Optimizer(**{**OPTIMIZER, **changes})


@pytest.fixture(scope="module")
def _lite0() -> nn.Module:
    cfg = {**config().backbone.model_dump(), "weights": {"source": "none"}}
    return B.create_backbone(cfg, allow_random=True)


@pytest.fixture
def net(_lite0) -> TransferNet:
    """A fresh randomly initialised EfficientNet-Lite0 base with a dense head."""
    return TransferNet(copy.deepcopy(_lite0), DenseHead(1280, 16, 0.5, 1), "avg")


# ----------------------------------------------------------------------------------------------- what trains


def test_unfreeze_all_trains_the_whole_base(net):
    B.freeze_base(net.base, "all")
    assert all(p.requires_grad for p in net.base.parameters())
    B.freeze_base(net.base, 1)
    trainable = {id(p) for p in net.base.parameters() if p.requires_grad}
    assert trainable == {id(p) for m in B.top_blocks(net.base, 1) for p in m.parameters()}
    assert not net.base.conv_stem.weight.requires_grad


@pytest.mark.parametrize("unfreeze", [1, 3, "all"])
def test_layerwise_groups_are_ordered_from_the_head_down_and_hold_every_trainable_parameter_once(net, unfreeze):
    B.freeze_base(net.base, unfreeze)
    groups = param_groups(net, optimizer(layer_decay=0.5))
    depths = [g["depth"] for g in groups]
    assert depths == sorted(depths) and depths[0] == 0
    for g in groups:  # the rate decays with depth; biases and norm weights carry no weight decay
        assert g["lr"] == pytest.approx(1e-3 * 0.5 ** g["depth"])
        assert g["weight_decay"] == (0.0 if all(p.ndim == 1 for p in g["params"]) else 0.05)
    grouped = [id(p) for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped))  # each parameter once
    assert set(grouped) == {id(p) for p in net.parameters() if p.requires_grad}  # every trainable one, no frozen one
    assert {id(p) for p in net.head.parameters()} == {id(p) for g in groups if g["depth"] == 0 for p in g["params"]}
    top_down = [g["depth"] for g in groups for p in g["params"] if p is net.base.conv_head.weight]
    assert top_down == [1]  # the head, then the top of the base
    if unfreeze == "all":  # ... down to the stem, which learns slowest
        [stem] = [g for g in groups if any(p is net.base.conv_stem.weight for p in g["params"])]
        assert stem["depth"] == max(depths) == 1 + 7 + 1  # head, conv_head/bn2, 7 stages, conv_stem/bn1


def test_one_layer_decay_is_one_group_as_the_book(net):
    B.freeze_base(net.base, 1)
    book = optimizer(name="rmsprop", weight_decay=0.0, layer_decay=1.0)
    [group] = param_groups(net, book)
    assert {id(p) for p in group["params"]} == {id(p) for p in net.parameters() if p.requires_grad}
    B.freeze_base(net.base, 0)
    for p in net.head.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match="nothing to train"):
        param_groups(net, book)


def test_warm_up_then_cosine_decay_keeps_each_groups_ratio():
    params = [nn.Parameter(torch.zeros(2, 2)), nn.Parameter(torch.zeros(2, 2))]
    groups = [{"params": [params[0]], "lr": 1e-3}, {"params": [params[1]], "lr": 1e-4}]
    adamw = make_optimizer(groups, optimizer(layer_decay=1.0))
    assert isinstance(adamw, torch.optim.AdamW)
    config_ = lr_scheduler(adamw, LrSchedule(name="cosine", warmup_epochs=2), total_steps=100, epochs=10)
    assert config_["interval"] == "step"
    rates = []
    for _ in range(100):
        rates.append([g["lr"] for g in adamw.param_groups])
        adamw.step()
        config_["scheduler"].step()
    head, low = np.array(rates).T
    assert head[0] == pytest.approx(1e-3 / 20)  # 2 epochs x 10 steps of linear warm-up
    assert np.all(np.diff(head[:20]) > 0) and head[20] == pytest.approx(1e-3)
    assert np.all(np.diff(head[20:]) < 0) and head[-1] < 1e-3 * 0.01  # cosine down to ~0
    np.testing.assert_allclose(low, head / 10)
    assert lr_scheduler(adamw, LrSchedule(name="constant", warmup_epochs=0), 100, 10) is None  # the book


# ----------------------------------------------------------------------------------------------- BatchNorm


def _train_mode_steps(net: TransferNet, keep_eval: list[nn.Module], steps: int = 1) -> None:
    """Forward passes in train mode, as Lightning runs them (ClassifierModule.train keeps `keep_eval` in eval)."""
    net.train()
    for module in keep_eval:
        module.eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(steps):
            net(torch.randn(2, 3, 32, 32, generator=generator))


@pytest.mark.parametrize("mode", ["frozen", "update"])
def test_batchnorm_statistics_move_only_when_asked_and_only_where_the_base_trains(net, mode):
    keep_eval = B.freeze_base(net.base, 1, mode)
    before = copy.deepcopy(net.base.state_dict())
    _train_mode_steps(net, keep_eval)
    after = net.base.state_dict()
    moved = {k for k in before if "running_" in k and not torch.equal(before[k], after[k])}
    top = ("blocks.6.", "bn2.")
    if mode == "frozen":
        assert moved == set()
    else:
        assert moved and all(k.startswith(top) for k in moved)  # the unfrozen top re-estimates them
        assert {"bn2.running_mean", "blocks.6.0.bn1.running_var"} <= moved


def test_batchnorm_mode_is_checked():
    with pytest.raises(ConfigError, match="batchnorm='adaptive' is unknown; allowed: frozen, update"):
        config("techniques.fine_tune.batchnorm=adaptive")


# ----------------------------------------------------------------------------------------------- early stopping


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("playbook"), per_class=40)


def test_early_stopping_stops_at_the_patience(study):
    """A rate too small to move any weight leaves val_loss the same every epoch: epoch 1 is the best, and training
    stops once `patience` more epochs have not improved it."""
    cfg = config(
        "technique=baseline",
        "techniques.baseline.epochs=8",
        "techniques.baseline.optimizer.lr=1e-30",
        "techniques.baseline.early_stopping_patience=2",
    )
    metrics = train_technique(cfg, paths(study, "stopped"), progress=False)
    history = (study / "models/stopped/history.csv").read_text().splitlines()[1:]
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


# ----------------------------------------------------------------------------------------------- TTA


def _tested(net: nn.Module, array: np.ndarray, image_input: ImageInput | None, num_classes: int = 2) -> dict:
    """ClassifierModule.test with TTA on `array` (every row in the test split)."""
    labels = np.arange(len(array)) % num_classes
    rows = {s: np.arange(len(array)) for s in ("train", "val", "test")}
    data = ArrayDataModule(SplitArrays(array, labels, rows, ["a", "b", "c"][:num_classes]), 4, 0)
    module = ClassifierModule(net, num_classes, optimizer(layer_decay=1.0), image_input, tta=True)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(module, datamodule=data, verbose=False)
    return module.test_results


def test_tta_on_images_is_the_mean_of_the_image_and_its_flip():
    torch.manual_seed(0)
    net = SmallConvNet(48, 1).eval()
    images = np.random.default_rng(0).integers(0, 256, (10, 48, 48, 3), dtype=np.uint8)
    results = _tested(net, images, ImageInput())
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        plain, flipped = class_probabilities(net(x)), class_probabilities(net(x.flip(3)))
    mean = (plain + flipped) / 2
    samples = results["samples"]
    torch.testing.assert_close(samples["prob_tta"], mean.max(1).values)
    assert torch.equal(samples["pred_tta"], mean.argmax(1))
    torch.testing.assert_close(samples["prob"], plain.max(1).values)  # the plain result is still the plain pass
    assert not torch.allclose(plain, flipped)  # the two passes differ, so the mean means something
    assert results["tta"]["n"] == results["n"] == 10
    assert results["tta"]["correct"] == int((mean.argmax(1) == samples["y"]).sum())


def test_tta_on_cached_features_averages_the_two_views():
    torch.manual_seed(0)
    head = DenseHead(8, 4, 0.5, 3).eval()
    features = np.random.default_rng(1).normal(size=(9, 2, 8)).astype(np.float16)  # (image, flip) per row
    results = _tested(head, features, None, num_classes=3)
    x = torch.from_numpy(features).float()
    with torch.no_grad():
        mean = (class_probabilities(head(x[:, 0])) + class_probabilities(head(x[:, 1]))) / 2
    torch.testing.assert_close(results["samples"]["prob_tta"], mean.max(1).values)
    with torch.no_grad():
        torch.testing.assert_close(results["samples"]["prob"], class_probabilities(head(x[:, 0])).max(1).values)


def test_cached_feature_extract_with_tta_reports_both_accuracies(study):
    cfg = config("technique=feature_extract", "techniques.feature_extract.tta=true")
    metrics = train_technique(cfg, paths(study, "fe_tta"), progress=False)
    assert {"test_accuracy", "test_accuracy_tta", "ci95_low_tta", "ci95_high_tta"} <= set(metrics)
    assert metrics["test_images"] == 20 and 0 <= metrics["test_correct_tta"] <= 20
    assert len(list((study / "data/features/efficientnet_lite0").glob("features-*.npy"))) == 2  # plain and flipped


# ----------------------------------------------------------------------------------------------- LR finder


def test_lr_finder_writes_a_suggested_rate_and_its_curve_which_the_report_shows(study, tmp_path):
    from smallvision.lr_find import find_lr
    from smallvision.visualize.lr_finder import LR_FIND_JSON, LR_FIND_PNG, lr_find_section, read_lr_find
    from smallvision.visualize.plotting import save
    from smallvision.visualize.sections import Technique

    cfg = config(
        "technique=baseline",
        "techniques.baseline.batch_size=4",  # 10 batches an epoch: the test spends its time on steps, not epochs
        "lr_find.num_training=16",
        "lr_find.min_lr=1e-6",
        "lr_find.max_lr=1e-2",
    )
    out = paths(study, "lr_baseline")
    result = find_lr(cfg, out, progress=False)
    assert isinstance(result["suggestion"], float) and 1e-6 <= result["suggestion"] <= 1e-2
    assert 12 <= len(result["lr"]) == len(result["loss"]) <= 16 and result["lr"] == sorted(result["lr"])
    assert read_lr_find(out.out) == result  # lr_find.json
    assert (out.out / LR_FIND_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.out.glob("*.ckpt"))  # Lightning's restore point is removed

    class Report:  # what the section reads of visualize.sections.Report
        def __init__(self) -> None:
            self.trained = [Technique("baseline", out.out), Technique("augment", tmp_path / "no_finder_run")]
            self.saved: list = []

        def save(self, fig, name, technique=None):
            self.saved.append((name, technique))
            return save(fig, tmp_path / name, 40)

    report = Report()
    section = lr_find_section(report)
    assert [f.path.name for f in section.figures] == ["lr_find_baseline.png"]
    assert f"suggested {result['suggestion']:.2g}" in section.figures[0].caption
    assert (out.out / LR_FIND_JSON).is_file() and report.saved == [("lr_find_baseline.png", "baseline")]

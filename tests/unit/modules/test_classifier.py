"""Test-time augmentation over the horizontal flip (ClassifierModule.test), reported beside the plain test
accuracy, never instead of it; an epoch's training loss and accuracy from the per-step sums."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from helpers.study import config, make_dataset, paths
from torch import nn

from smallvision.data.datamodule import ArrayDataModule, SplitArrays
from smallvision.models.convnet import SmallConvNet
from smallvision.models.heads import DenseHead
from smallvision.modules.classifier import ClassifierModule, ImageInput
from smallvision.networks import class_probabilities
from smallvision.schema_techniques import Optimizer
from smallvision.training import train_technique

OPTIMIZER = {"name": "adamw", "lr": 1e-3, "alpha": 0.9, "eps": 1e-7, "momentum": 0.0, "weight_decay": 0.05}


def optimizer(**changes) -> Optimizer:
    """The optimizer settings OPTIMIZER with `changes`."""
    return Optimizer(**{**OPTIMIZER, **changes})


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("playbook"), per_class=40)


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


# ----------------------------------------------------------------------------------------------- training sums


def test_an_epochs_training_loss_and_accuracy_are_the_means_over_its_samples(tmp_path):
    """The per-step sums (kept on the training device) add up to the epoch's mean loss and accuracy in history."""
    torch.manual_seed(0)
    features = np.random.default_rng(2).normal(size=(10, 8)).astype(np.float32)
    labels = np.arange(10) % 2
    rows = {s: np.arange(10) for s in ("train", "val", "test")}
    data = ArrayDataModule(SplitArrays(features, labels, rows, ["a", "b"]), 4, 0)  # batches of 4, 4 and 2
    module = ClassifierModule(DenseHead(8, 4, 0.0, 1), 2, optimizer(layer_decay=1.0), None)
    seen = []
    losses = module._losses

    def recorded(logits, y):
        loss, pred, prob = losses(logits, y)
        if module.trainer.training:
            seen.append((loss.detach(), pred == y))
        return loss, pred, prob

    module._losses = recorded
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=data)
    row = module.history[-1]
    assert len(seen) == 3 and sum(len(loss) for loss, _ in seen) == 10
    assert row["train_loss"] == pytest.approx(float(torch.cat([loss for loss, _ in seen]).mean()), rel=1e-6)
    assert row["train_acc"] == pytest.approx(float(torch.cat([ok for _, ok in seen]).float().mean()))

"""The optimizer side of the fine-tuning playbook (smallvision.modules.optim): unfreezing the whole base, layer-wise
learning rates, AdamW with warm-up and cosine decay. BatchNorm statistics: unit/models/test_backbones.py; early
stopping: unit/test_training.py; test-time augmentation: unit/modules/test_classifier.py."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers.study import config
from torch import nn

from smallvision.errors import ConfigError
from smallvision.models import backbones as B
from smallvision.models.heads import DenseHead, TransferNet
from smallvision.modules.optim import lr_scheduler, make_optimizer, param_groups
from smallvision.schema_techniques import LrSchedule, Optimizer

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

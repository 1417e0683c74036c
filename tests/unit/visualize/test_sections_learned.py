"""The report's sections on what the convnets learned: the first-layer kernels are drawn beside the initialisation
training started from, rebuilt from the checkpoint's spec and seed."""

from __future__ import annotations

import torch
from helpers.study import config, make_dataset, paths

from smallvision import techniques
from smallvision.networks import build_net, load_checkpoint
from smallvision.runs import CHECKPOINT
from smallvision.training import train_technique
from smallvision.visualize import kernels, sections_learned


def test_the_scratch_initialisation_is_the_one_training_started_from(tmp_path, monkeypatch):
    started = {}

    def recording(spec, pretrained=True):
        net = build_net(spec, pretrained)
        started.setdefault("weight", kernels.first_conv(net)[1].weight.detach().clone())
        return net

    monkeypatch.setattr(techniques.networks, "build_net", recording)
    root = make_dataset(tmp_path, per_class=8)
    cfg = config("technique=baseline", "seed=7", "techniques.baseline.epochs=1")
    train_technique(cfg, paths(root, "baseline"), progress=False)
    spec = load_checkpoint(paths(root, "baseline").out / CHECKPOINT)[1]
    rebuilt = kernels.first_conv(sections_learned.scratch_initialisation(spec, 7))[1].weight
    assert torch.equal(rebuilt, started["weight"])

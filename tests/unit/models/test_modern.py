"""The modern rung (technique `modern`, stage train-modern): the mini Xception's shapes, parameter count and residual
path, its own augmentation batched on the training device, label smoothing in the loss only, its settings and
stage, a real training run, the learned-feature figures' layers and the comparison's five rungs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from helpers.study import LIMITS, config, make_dataset, paths

from smallvision import evidence, networks, runs, stages, techniques, training
from smallvision.data.augmentation import AffineConfig
from smallvision.errors import ConfigError
from smallvision.export import export_checkpoint
from smallvision.models.modern import ModernConvNet
from smallvision.modules import classifier
from smallvision.modules.classifier import ClassifierModule, ImageInput
from smallvision.networks import build_net
from smallvision.visualize import kernels, layers, receptive, sections_learned

BOOK = [32, 64, 128, 256, 512]  # the 2nd edition's widths


def _params(widths: list[int], separable: bool, stem_kernel: int, outputs: int) -> int:
    """The parameter count by hand: the stem, per block two BNs, two (separable) convs and the 1x1 projection,
    the final linear layer."""
    total, cin = 3 * widths[0] * stem_kernel**2, widths[0]
    for w in widths:
        convs = cin * 9 + cin * w + w * 9 + w * w if separable else 9 * (cin * w + w * w)
        total += 2 * cin + 2 * w + convs + cin * w
        cin = w
    return total + cin * outputs + outputs


@pytest.mark.parametrize("separable", [True, False])
def test_the_network_has_its_shapes_and_parameter_count(separable):
    net = ModernConvNet(BOOK, separable, 5, 1, 0.5, 1)
    count = sum(p.numel() for p in net.parameters())
    assert count == _params(BOOK, separable, 5, 1)
    assert count == (718_849 if separable else 4_899_617)  # separable convs: 6.8x fewer weights
    sizes = {}

    def shape(name: str):
        def keep(_module, _inputs, output) -> None:
            sizes[name] = tuple(output.shape)

        return keep

    hooks = [m.register_forward_hook(shape(n)) for n, m in net.conv_layers()]
    assert net.eval()(torch.zeros(2, 3, 180, 180)).shape == (2, 1)
    for h in hooks:
        h.remove()
    # each block halves the map (rounded up), widening to its width
    assert sizes == {
        "stem": (2, 32, 180, 180),
        "block_1": (2, 32, 90, 90),
        "block_2": (2, 64, 45, 45),
        "block_3": (2, 128, 23, 23),
        "block_4": (2, 256, 12, 12),
        "block_5": (2, 512, 6, 6),
    }
    # a strided stem halves every map; three classes get three logits; any size works (global pooling)
    small = ModernConvNet([8, 16], separable, 3, 2, 0.0, 3)
    assert small(torch.zeros(2, 3, 64, 64)).shape == small(torch.zeros(2, 3, 37, 37)).shape == (2, 3)
    assert small.blocks[-1](small.blocks[0](small.stem(torch.zeros(1, 3, 64, 64)))).shape == (1, 16, 8, 8)


def test_the_residual_path_carries_the_input_past_the_main_branch():
    torch.manual_seed(0)
    net = ModernConvNet([8, 16], True, 5, 1, 0.0, 1).eval()
    block, x = net.blocks[1], torch.randn(2, 8, 16, 16)
    assert not torch.allclose(block(x), block.residual(x))
    with torch.no_grad():  # the main branch's last conv outputs zeros: what is left is the strided projection
        block.main[5][1].weight.zero_()
    assert torch.equal(block(x), block.residual(x))
    # and the stem still learns through the projections when every main branch is silenced
    for b in net.blocks:
        with torch.no_grad():
            b.main[5][1].weight.zero_()
    net(torch.randn(2, 3, 32, 32)).sum().backward()
    assert net.stem.weight.grad.abs().sum() > 0
    assert all(b.main[2][0].weight.grad.abs().sum() == 0 for b in net.blocks)  # the silenced branches get nothing


def test_settings_spec_and_stage():
    cfg = config()
    modern = cfg.techniques["modern"]
    spec = networks.make_spec(modern, cfg.backbone, ["circle", "square"])
    assert networks.network_of(modern) == spec["network"] == "modern"
    assert networks.network_name(modern, cfg.backbone) == networks.spec_network_name(spec) == "mini_xception"
    assert isinstance(networks.build_net(spec), ModernConvNet)
    assert stages.FROM_SCRATCH == tuple(networks.FROM_SCRATCH)  # the registry's copy (it imports no torch)
    # its own transforms, not the `augmentation` group: the stage's params name neither it nor the backbone
    assert stages.reads("train-modern", cfg.model_dump())[:2] == ["techniques.modern", "trainer"]
    assert list(stages.TRAINING.values()) == list(runs.STUDY_ORDER)
    assert list(stages.TRAINING)[2] == "train-modern"
    smoothing = {name: t.label_smoothing for name, t in cfg.techniques.items()}
    assert smoothing == {"baseline": 0.0, "augment": 0.0, "modern": 0.1, "feature_extract": 0.0, "fine_tune": 0.0}
    with pytest.raises(ConfigError, match=r"techniques.modern.stem_kernel=4 must be odd"):
        config("techniques.modern.stem_kernel=4")
    with pytest.raises(ConfigError, match=r"techniques.modern.widths=\[\] must be a list of 1 to 10 block widths"):
        config("techniques.modern.widths=[]")
    with pytest.raises(ConfigError, match=r"techniques.modern.label_smoothing=1 must be a number in \[0, 1\)"):
        config("techniques.modern.label_smoothing=1")


@pytest.mark.parametrize(
    "preset, size, widths, epochs",
    [("smoke", 64, [8, 16], 2), ("quick", 96, BOOK[:4], 20), ("default", 180, BOOK, 90), ("playbook", 180, BOOK, 90)],
)
def test_each_preset_sizes_the_rung(preset, size, widths, epochs):
    modern = config(f"preset={preset}").techniques["modern"]
    assert (modern.image_size, modern.widths, modern.epochs) == (size, widths, epochs)
    assert (modern.optimizer.name, modern.lr_schedule.name) == ("adamw", "cosine")


def test_augmentation_runs_batched_on_the_training_device(monkeypatch):
    cfg = config("technique=modern")
    transforms = training.augmentation(cfg)
    assert transforms == AffineConfig.of(cfg.techniques["modern"].augmentation) != AffineConfig.of(cfg.augmentation)
    calls = []
    real = classifier.random_affine

    def record(x, cfg, generator=None):
        calls.append((tuple(x.shape), x.device, generator.device))
        return real(x, cfg, generator=generator)

    monkeypatch.setattr(classifier, "random_affine", record)
    devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    for device in devices:
        module = ClassifierModule(torch.nn.Identity(), 2, cfg.selected.optimizer, ImageInput(augmentation=transforms))
        module.to(device)
        images = torch.randint(0, 256, (16, 32, 32, 3), dtype=torch.uint8, device=device)
        images[:] = images[0]  # one image, sixteen times: every copy is transformed on its own
        out = module.prepare_images(images, train=True)
        assert out.device.type == device and out.shape == (16, 3, 32, 32)
        assert len({tuple(o.flatten()[:64].tolist()) for o in out}) == 16
        assert torch.equal(module.prepare_images(images, train=False), module.prepare_images(images, train=False))
    assert [(shape, d.type, g.type) for shape, d, g in calls] == [((16, 3, 32, 32), d, d) for d in devices]


def test_label_smoothing_changes_the_training_loss_only():
    cfg = config()
    logits, y = torch.tensor([[2.0], [-1.0], [0.5]]), torch.tensor([1, 0, 0])
    plain = ClassifierModule(torch.nn.Identity(), 2, cfg.selected.optimizer, None)
    smooth = ClassifierModule(torch.nn.Identity(), 2, cfg.selected.optimizer, None, label_smoothing=0.2)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], torch.tensor([0.9, 0.1, 0.1]))
    assert torch.allclose(classifier.cross_entropies(logits, y, smooth.label_smoothing).mean(), expected)
    assert torch.equal(plain._losses(logits, y)[0], smooth._losses(logits, y)[0])  # what history and metrics report
    three = ClassifierModule(torch.nn.Identity(), 3, cfg.selected.optimizer, None, label_smoothing=0.3)
    z, t = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    expected = torch.nn.functional.cross_entropy(z, t, label_smoothing=0.3)
    assert torch.allclose(classifier.cross_entropies(z, t, three.label_smoothing).mean(), expected)


def test_modern_trains_and_its_checkpoint_rebuilds(tmp_path, monkeypatch):
    started = {}

    def recording(spec, pretrained=True):
        net = build_net(spec, pretrained)
        started.setdefault("stem", net.stem.weight.detach().clone())
        return net

    monkeypatch.setattr(techniques.networks, "build_net", recording)
    study = make_dataset(tmp_path, per_class=24)
    metrics = training.train_technique(config("technique=modern", "seed=7"), paths(study, "modern"), progress=False)
    assert (metrics["technique"], metrics["kind"], metrics["backbone"]) == ("modern", "modern", "mini_xception")
    assert metrics["parameters"] == _params([8, 16], True, 5, 1) and metrics["epochs_run"] == 2
    net, spec = networks.load_checkpoint(study / "models/modern/best.ckpt")
    assert isinstance(net, ModernConvNet) and spec["widths"] == [8, 16] and spec["image_size"] == 64
    # the kernels figure shows the stem beside the initialisation training started from
    assert torch.equal(sections_learned.scratch_initialisation(spec, 7).stem.weight, started["stem"])
    # the export stage writes it as ONNX and TorchScript, both matching PyTorch
    photos = sorted(p for p in (study / "data/raw").rglob("*") if p.is_file())[:4]
    described = export_checkpoint(
        study / "models/modern/best.ckpt",
        tmp_path / "export",
        photos,
        technique="modern",
        opset=20,
        tolerance=1e-4,
        limits=LIMITS,
    )
    assert described["network"] == "mini_xception" and described["parity"]["images"] == 4


def test_the_learned_feature_figures_read_the_stem_and_every_block():
    net = ModernConvNet([8, 16, 32], True, 5, 1, 0.0, 1)
    names = ["stem", "block_1", "block_2", "block_3"]
    assert [n for n, _ in layers.activation_layers(net)] == [n for n, _ in layers.depth_layers(net)] == names
    assert [n for n, _ in layers.filter_layers(net, ["block_2"], "visualize.filters.scratch_layers")] == ["block_2"]
    with pytest.raises(ConfigError, match="no layer named 'conv2d_1' in ModernConvNet"):
        layers.filter_layers(net, ["conv2d_1"], "visualize.filters.scratch_layers")
    assert layers.cam_layer(net) == ("block_3", net.blocks[-1])
    assert kernels.first_conv(net)[1] is net.stem
    # the top patches' receptive fields, measured through the residual sums: each block sees more, at twice the step
    geometry = receptive.layer_geometry(net, layers.depth_layers(net), 64)
    fields = [geometry[n].size for n in names]
    assert fields == sorted(fields) and fields[0] == 5 and [geometry[n].jump for n in names] == [1, 2, 4, 8]


# --------------------------------------------------------------------------------------------- the comparison


def _fake_run(folder: Path, technique: str, correct: list[bool], seed: int = 42) -> None:
    folder.mkdir(parents=True)
    rows = [f"img_{i:03d}.jpg,cat,{'cat' if right else 'dog'},0.9" for i, right in enumerate(correct)]
    (folder / "test_predictions.csv").write_text("path,actual,predicted,probability\n" + "\n".join(rows) + "\n")
    metrics = {"technique": technique, "test_accuracy": sum(correct) / len(correct), "test_images": len(correct)}
    (folder / "metrics.json").write_text(json.dumps({**metrics, "preset": "quick", "seed": seed, "manifest": "m"}))


ACCURACY = {"fine_tune": 0.98, "feature_extract": 0.95, "modern": 0.88, "augment": 0.77, "baseline": 0.70}


def _correct(technique: str, seed: int) -> list[bool]:
    right = [i < ACCURACY[technique] * 200 for i in range(200)]
    return random.Random(seed).sample(right, len(right)) if technique == "baseline" else right


def test_the_comparison_has_five_rungs_with_the_paired_steps_around_modern(tmp_path):
    for technique in ACCURACY:  # written out of order: the study's order comes from STUDY_ORDER
        _fake_run(tmp_path / technique, technique, _correct(technique, 0))
    rows = evidence.study_comparison(tmp_path, None).rows
    assert [r["technique"] for r in rows] == list(runs.STUDY_ORDER) == list(reversed(ACCURACY))
    steps = {r["technique"]: (r["step_from"], r["step_paired_images"], r["step_p_value"]) for r in rows[1:]}
    assert steps["modern"][:2] == ("augment", 200) and steps["feature_extract"][:2] == ("modern", 200)
    assert steps["modern"][2] < 1e-6  # 22 images only modern gets right, none only augment: McNemar's exact p
    # a seed sweep: the same steps per seed and their mean
    seeds = tmp_path / "sweep"
    for seed in (0, 1):
        for technique in ACCURACY:
            _fake_run(seeds / f"{technique}_{seed}", technique, _correct(technique, seed), seed=seed)
    rows, steps = evidence.seed_comparison(evidence.runs_in(seeds))
    summary = {r["technique"]: (r.get("step_from"), r.get("step_seeds")) for r in rows}
    assert summary["modern"] == ("augment", 2) and summary["feature_extract"] == ("modern", 2)
    assert {(s["from"], s["to"]) for s in steps.per_seed} >= {("augment", "modern"), ("modern", "feature_extract")}


def test_mixing_trains_against_class_shares_and_is_off_by_default():
    cfg = config()
    assert ClassifierModule(torch.nn.Identity(), 2, cfg.selected.optimizer, None).mixing is None
    torch.manual_seed(0)
    x, y = torch.rand(8, 3, 16, 16), torch.tensor([0, 1] * 4)
    for kw in ({"mixup_alpha": 0.4}, {"cutmix_alpha": 1.0}, {"mixup_alpha": 0.4, "cutmix_alpha": 1.0}):
        mixed, shares = ClassifierModule(torch.nn.Identity(), 2, cfg.selected.optimizer, None, **kw).mixing(x, y)
        assert mixed.shape == x.shape and not torch.equal(mixed, x)
        assert shares.shape == (8, 2) and torch.allclose(shares.sum(1), torch.ones(8))
        # each image's shares are its own label and its neighbour's (the batch rolled by one)
        own = shares[torch.arange(8), y]
        assert torch.all(own >= 0) and torch.allclose(own + shares[torch.arange(8), y.roll(1)], torch.ones(8))
    # one-hot shares: the same loss and prediction as the hard labels; smoothing applies to the shares
    logits = torch.tensor([[2.0], [-1.0], [-0.5]])
    hard = torch.tensor([1, 0, 1])
    module = ClassifierModule(torch.nn.Identity(), 2, cfg.selected.optimizer, None, label_smoothing=0.2)
    loss, pred, prob = module._losses(logits, torch.nn.functional.one_hot(hard, 2).float())
    plain_loss, plain_pred, plain_prob = module._losses(logits, hard)
    assert torch.allclose(loss, plain_loss) and torch.equal(pred, plain_pred) and pred.tolist() == [1, 0, 0]
    assert torch.equal(prob, plain_prob) and torch.allclose(
        prob, torch.sigmoid(logits[:, 0]).where(pred == 1, torch.sigmoid(-logits[:, 0]))
    )
    half = torch.tensor([[0.5, 0.5]] * 3)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], torch.full((3,), 0.5))
    assert torch.allclose(classifier.cross_entropies(logits, half, module.label_smoothing).mean(), expected)


def test_the_average_of_the_weights_is_what_validation_scores_and_checkpoints_hold():
    cfg = config()
    net = torch.nn.Linear(3, 1)
    module = ClassifierModule(net, 2, cfg.selected.optimizer, None, ema_decay=0.5)
    module.on_fit_start()
    module.train()
    assert not module._ema[0].training  # scores as a network in eval mode, also while the module trains
    start = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    module.on_train_batch_end(None, None, 0)  # the first update copies the weights
    with torch.no_grad():
        net.weight.add_(2.0)
    module.on_train_batch_end(None, None, 1)  # then 0.5 x average + 0.5 x weights
    averaged = start + 1.0 + 1.0
    assert torch.allclose(module._ema[0].module.weight, averaged)
    x = torch.randn(4, 3)
    assert torch.allclose(module._scored(x), torch.nn.functional.linear(x, averaged, net.bias))
    checkpoint = {"state_dict": module.state_dict()}
    assert set(checkpoint["state_dict"]) == {"net.weight", "net.bias"}  # the average is no submodule
    module.on_save_checkpoint(checkpoint)
    assert torch.allclose(checkpoint["state_dict"]["net.weight"], averaged)
    assert torch.allclose(net.weight, start + 3.0)  # training goes on from its own weights
    module.on_fit_end()
    assert torch.equal(module._scored(x), module(x))


def test_modern_trains_with_mixing_and_the_average_of_its_weights(tmp_path):
    study = make_dataset(tmp_path, per_class=24)
    settings = config(
        "technique=modern",
        "techniques.modern.mixup_alpha=0.2",
        "techniques.modern.cutmix_alpha=1.0",
        "techniques.modern.ema_decay=0.9",
    )
    metrics = training.train_technique(settings, paths(study, "modern"), progress=False)
    assert metrics["epochs_run"] == 2 and metrics["test_images"] > 0
    net, _ = networks.load_checkpoint(study / "models/modern/best.ckpt")
    assert isinstance(net, ModernConvNet)


def test_the_average_scores_in_eval_mode_while_the_module_trains():
    cfg = config()
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1)
    )
    module = ClassifierModule(net, 2, cfg.selected.optimizer, None, ema_decay=0.9)
    module.on_fit_start()
    module.train()
    x = torch.randn(6, 3)
    net(x)  # a training step moves the net's BatchNorm statistics...
    module.on_train_batch_end(None, None, 0)
    before = module._ema[0].module[1].running_mean.clone()
    first, second = module._scored(x), module._scored(x)
    assert torch.equal(first, second)  # ...but scoring draws no dropout mask and leaves the averaged statistics
    assert torch.equal(module._ema[0].module[1].running_mean, before)

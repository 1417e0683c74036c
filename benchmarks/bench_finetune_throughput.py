"""Benchmark 7: training throughput of the `fine_tune` stage's step, per preset, against a plain PyTorch loop.

    python benchmarks/bench_finetune_throughput.py                       # playbook and default, 20 timed batches
    python benchmarks/bench_finetune_throughput.py --presets playbook --steps 10
    python benchmarks/bench_finetune_throughput.py --assume-no-bf16      # as on a CPU without native bf16
    python benchmarks/bench_finetune_throughput.py --set trainer.compile=true  # ours with a setting changed

Ours (what `pipelines/train.py technique=fine_tune` trains): the network, frozen parts and input pipeline the
project's builder makes from the composed config (`playbook`: EfficientNet-Lite2 at 260 px, the whole base
trainable; `default`: Lite0 at 224 px, the top block trainable; BatchNorm frozen in both), its ClassifierModule
(uint8 batches augmented and normalised on the device, channels_last, layer-wise AdamW or RMSprop as configured)
inside a Lightning Trainer, in the precision `trainer.precision: auto` picks. Reference: the same network (same
builder, same trainable parameters, frozen modules kept in eval mode) trained by a plain PyTorch loop, NCHW, with
bf16 autocast where ours trains in bf16 (fp32 where bf16 is emulated), on already normalised float batches
without augmentation. Both train on the same random images (no dataset needed): the speed of a step does not
depend on what the pixels show. The head starts from random weights (a feature-extract checkpoint written here).
"""

from __future__ import annotations

import argparse
import tempfile
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from bench_train_throughput import StepClock, images_per_s, now, timed_trainer

from smallvision import networks, techniques, training
from smallvision.data.datamodule import ArrayDataModule, SplitArrays
from smallvision.models import backbones
from smallvision.modules.optim import make_optimizer
from smallvision.schema import Settings

import hardware
from common import Progress, project_config, save, say

PRESETS = ("playbook", "default")
TARGETS = {"playbook": 1.5}  # ours vs the plain loop; the other presets are printed without a target
CLASSES = ["cat", "dog"]


def preset_config(preset: str, *overrides: str) -> Settings:
    """The composed config of `preset` with fine_tune selected, as `pipelines/train.py` composes it."""
    return project_config("technique=fine_tune", f"preset={preset}", *overrides)


def start_checkpoint(cfg: Settings, path: Path) -> Path:
    """A feature-extract checkpoint with a random head for `cfg`'s fine-tune: what the builder starts from."""
    tech, bb = cfg.selected, cfg.backbone
    # random weights: only the feature size of the base at this image size is needed
    base = backbones.create_backbone({**bb.model_dump(), "weights": {"source": "none"}}, allow_random=True)
    features = backbones.feature_dim(base, tech.image_size, tech.head.pool)
    spec = networks.make_spec(tech, bb, CLASSES, features)
    head = networks.build_head(spec)
    state = {f"net.head.{k}": v for k, v in head.state_dict().items()}
    torch.save({"hyper_parameters": {"spec": spec}, "state_dict": state}, path)
    return path


def setup_of(cfg: Settings, images: np.ndarray, trainer: L.Trainer, workdir: Path) -> techniques.Setup:
    """The project's fine-tune network, frozen parts and input pipeline (`techniques.builder`)."""
    return techniques.builder(cfg.selected)(
        techniques.Inputs(
            technique=cfg.selected,
            backbone=cfg.backbone,
            classes=CLASSES,
            images=images,
            augmentation=training.augmentation(cfg),
            channels_last=cfg.trainer.channels_last,
            trainer=trainer,
            features_dir=workdir / "features",
            manifest_digest="random-images",
            head_checkpoint=start_checkpoint(cfg, workdir / "feature_extract.ckpt"),
        )
    )


def ours(cfg: Settings, precision: str, warmup: int, steps: int, workdir: Path, device: str = "cpu") -> float:
    """img/s of the project's fine-tune step: its builder, its ClassifierModule, a Lightning Trainer."""
    tech, batches = cfg.selected, warmup + steps + 1
    generator = np.random.default_rng(0)
    images = generator.integers(0, 256, (batches * tech.batch_size, tech.image_size, tech.image_size, 3), np.uint8)
    labels = generator.integers(0, 2, len(images))
    rows = {"train": np.arange(len(images)), "val": np.arange(2), "test": np.arange(2)}
    clock = StepClock(Progress(f"ours ({precision})", batches), device)
    trainer = timed_trainer(clock, precision, batches, device)
    setup = setup_of(cfg, images, trainer, workdir)
    module = training.classifier_module(cfg, setup, len(CLASSES))
    data = ArrayDataModule(
        SplitArrays(setup.array, labels, rows, CLASSES), tech.batch_size, cfg.seed, num_workers=cfg.trainer.num_workers
    )
    trainer.fit(module, datamodule=data)
    return images_per_s(clock.times, warmup, tech.batch_size)


def reference(cfg: Settings, bf16: bool, warmup: int, steps: int, workdir: Path, device: str = "cpu") -> float:
    """img/s of the same network in a plain loop: NCHW, bf16 autocast (or fp32), normalised random float batches."""
    tech = cfg.selected
    setup = setup_of(cfg, np.zeros((1, 1, 1, 3), np.uint8), L.Trainer(logger=False), workdir)
    net = setup.net.to(device).train()
    for module in setup.frozen:  # as the project keeps them: frozen BatchNorm statistics, no dropout in the base
        module.eval()
    optimizer = make_optimizer([p for p in net.parameters() if p.requires_grad], tech.optimizer)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(tech.batch_size, 3, tech.image_size, tech.image_size, generator=generator).to(device)
    y = torch.randint(0, 2, (tech.batch_size,), generator=generator).float().to(device)
    autocast = torch.autocast(device, dtype=torch.bfloat16) if bf16 else nullcontext()
    times, progress = [], Progress(f"reference ({'bf16 autocast' if bf16 else 'fp32'})", warmup + steps + 1)
    for _ in range(warmup + steps + 1):
        optimizer.zero_grad()
        with autocast:
            logits = net(x)
        F.binary_cross_entropy_with_logits(logits.float().squeeze(1), y).backward()
        optimizer.step()
        times.append(now(device))
        progress.step()
    return images_per_s(times, warmup, tech.batch_size)


def describe(cfg: Settings) -> dict:
    tech = cfg.selected
    return {
        "backbone": cfg.backbone.name,
        "image_size": tech.image_size,
        "batch_size": tech.batch_size,
        "unfreeze_blocks": tech.unfreeze_blocks,
        "batchnorm": tech.batchnorm,
        "optimizer": tech.optimizer.name,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", choices=PRESETS, default=list(PRESETS), help="default: all")
    parser.add_argument("--warmup", type=int, default=3, help="batches before the clock starts")
    parser.add_argument("--steps", type=int, default=20, help="timed batches")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where both train")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="Hydra overrides for ours only, e.g. trainer.compile=true",
    )
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "smallvision-bench-finetune")
    hardware.add_argument(parser)
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: PyTorch sees no CUDA GPU here")
    torch.manual_seed(0)
    cpu = hardware.detect(args.assume_no_bf16)
    say(cpu.describe())
    args.workdir.mkdir(parents=True, exist_ok=True)
    result = {
        "device": args.device,
        "warmup_batches": args.warmup,
        "timed_batches": args.steps,
        "overrides": args.set,
        "presets": {},
    }
    for preset in args.presets:
        cfg = preset_config(preset)
        precision = hardware.trained_precision(cfg.trainer.precision, args.device, cpu)
        bf16 = hardware.PEAK_OF_PRECISION.get(precision) == "bf16"
        shown = describe(cfg)
        say(f"fine_tune, preset {preset}: {shown}; ours trains in {precision}")
        ref = reference(cfg, bf16, args.warmup, args.steps, args.workdir, args.device)
        say(f"  reference (plain loop, NCHW, {'bf16 autocast' if bf16 else 'fp32'}): {ref:.1f} img/s")
        rate = ours(preset_config(preset, *args.set), precision, args.warmup, args.steps, args.workdir, args.device)
        ratio = rate / ref
        target = TARGETS.get(preset)
        say(
            f"  ours ({precision}, {'channels_last' if cfg.trainer.channels_last else 'NCHW'}): {rate:.1f} img/s = "
            f"{ratio:.2f}x the reference" + (f" (target >= {target}x)" if target else "")
        )
        result["presets"][preset] = {
            **shown,
            "trained_precision": precision,
            "reference_precision": "bf16 autocast" if bf16 else "fp32",
            "images": "random",
            "images_per_s": {"ours": round(rate, 2), "reference": round(ref, 2)},
            "ratio_vs_reference": round(ratio, 2),
            "target": target,
        }
    save("finetune-throughput", result, cpu)
    return result


if __name__ == "__main__":
    main()

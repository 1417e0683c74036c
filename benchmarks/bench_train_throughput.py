"""Benchmark 1: training throughput of the `augment` stage, end to end, against a plain reference pipeline.

    python benchmarks/bench_train_throughput.py                 # the default study's augment stage: 150 px, batch 32
    python benchmarks/bench_train_throughput.py --image-size 96  # the quick preset's
    python benchmarks/bench_train_throughput.py --device cuda   # on the GPU (what trainer=gpu trains on)

Ours (what `pipelines/train.py technique=augment` runs): the decode-once uint8 cache, a DataLoader without
workers, the batched Keras affine on the training device, channels_last, the precision `auto` picks, inside a
Lightning Trainer. Reference: torchvision ImageFolder + PIL decoding + per-image torchvision transforms (Resize,
RandomAffine, RandomHorizontalFlip, ToTensor, Normalize) in a DataLoader with 2 workers, fp32, NCHW, a plain
PyTorch loop. Same network, optimiser, batch size and images (the dev archive's training split).

Also: the training step's achieved FLOP/s (counted by torch's FlopCounterMode) as a fraction of this machine's
measured matmul peak in bf16 and in fp32, and the step time of the other precision/layout choices, which is how
the `trainer.precision: auto` and `channels_last: true` defaults were chosen.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode
from torchvision import datasets, transforms

from smallvision import networks
from smallvision.data.augmentation import AffineConfig
from smallvision.data.cache import image_array
from smallvision.data.datamodule import ArrayDataModule, SplitArrays
from smallvision.data.manifest import load_manifest, manifest_digest
from smallvision.modules.classifier import ClassifierModule, ImageInput
from smallvision.modules.optim import make_optimizer
from smallvision.schema import Settings
from smallvision.trainer import resolve_precision

from common import DEV_ARCHIVE, dev_split, imagefolder, project_config, save

TARGET_RATIO, TARGET_PEAK_FRACTION = 3.0, 0.40


def now(device: str) -> float:
    """Wall-clock time once the device has finished what it was given (CUDA runs asynchronously)."""
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


class StepClock(L.Callback):
    """Wall-clock time at the end of every training batch."""

    def __init__(self, device: str = "cpu") -> None:
        self.times: list[float] = []
        self.device = device

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(now(self.device))


def images_per_s(times: list[float], warmup: int, batch: int) -> float:
    return (len(times) - 1 - warmup) * batch / (times[-1] - times[warmup])


def ours(
    cfg: Settings,
    images: np.ndarray,
    labels: np.ndarray,
    rows: dict,
    classes: list[str],
    precision: str,
    channels_last: bool,
    warmup: int,
    steps: int,
    compile: bool = False,
    device: str = "cpu",
) -> float:
    tech = cfg.techniques["augment"]
    spec = networks.make_spec(tech, cfg.backbone, classes)
    augmentation = AffineConfig.of(cfg.augmentation)
    image_input = ImageInput(tuple(spec["mean"]), tuple(spec["std"]), augmentation, channels_last)
    net = networks.build_net(spec)
    if compile:  # as training.py does for trainer.compile=true; the warm-up batches absorb the compile
        net.compile()
    module = ClassifierModule(net, len(classes), tech.optimizer, image_input, seed=0, spec=spec)
    data = ArrayDataModule(SplitArrays(images, labels, rows, classes), tech.batch_size, seed=0)
    clock = StepClock(device)
    trainer = L.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_epochs=1,
        logger=False,
        limit_train_batches=warmup + steps + 1,
        limit_val_batches=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
    )
    trainer.fit(module, datamodule=data)
    return images_per_s(clock.times, warmup, tech.batch_size)


def reference_transforms(cfg: Settings, size: int, mean, std) -> transforms.Compose:
    """The book's ImageDataGenerator as torchvision's per-image transforms (isotropic zoom, shear in degrees)."""
    aug = cfg.augmentation.model_dump()
    return transforms.Compose(
        [
            transforms.Resize((size, size)),
            transforms.RandomAffine(
                degrees=aug["rotation_range"],
                translate=(aug["width_shift_range"], aug["height_shift_range"]),
                scale=(1 - aug["zoom_range"], 1 + aug["zoom_range"]),
                shear=math.degrees(aug["shear_range"]),
            ),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def reference(cfg: Settings, folder: Path, warmup: int, steps: int, device: str = "cpu") -> float:
    tech = cfg.techniques["augment"]
    classes = sorted(p.name for p in folder.iterdir())
    spec = networks.make_spec(tech, cfg.backbone, classes)
    dataset = datasets.ImageFolder(
        str(folder), transform=reference_transforms(cfg, tech.image_size, spec["mean"], spec["std"])
    )
    loader = DataLoader(dataset, batch_size=tech["batch_size"], shuffle=True, num_workers=2, drop_last=True)
    net = networks.build_net(spec).to(device)
    net.train()
    optimizer = make_optimizer(net.parameters(), tech["optimizer"])
    times = []
    for i, (x, y) in enumerate(loader):
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(net(x).squeeze(1), y.float())
        loss.backward()
        optimizer.step()
        times.append(now(device))
        if i == warmup + steps:
            break
    return images_per_s(times, warmup, tech.batch_size)


def step_flops(cfg: Settings, classes: list[str]) -> float:
    """FLOPs of one training step (forward + backward) of the network at the configured batch and image size."""
    tech = cfg.techniques["augment"]
    net = networks.build_net(networks.make_spec(tech, cfg.backbone, classes))
    x = torch.randn(tech.batch_size, 3, tech.image_size, tech.image_size)
    with FlopCounterMode(display=False) as counter:
        net(x).sum().backward()
    return float(counter.get_total_flops())


def matmul_peak(dtype: torch.dtype, sizes=(1024, 2048, 4096), repeats: int = 5, device: str = "cpu") -> float:
    """FLOP/s of square matmuls in `dtype` (on a CPU, all threads): the best over sizes and repeats."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
        torch.mm(a, b)
        for _ in range(repeats):
            t = now(device)
            torch.mm(a, b)
            best = max(best, 2 * n**3 / (now(device) - t))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=3, help="batches before the clock starts")
    parser.add_argument("--steps", type=int, default=20, help="timed batches")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "smallvision-bench-data")
    parser.add_argument("--skip-variants", action="store_true", help="only ours (default settings) and the reference")
    parser.add_argument("--compile", action="store_true", help="also the default settings with torch.compile")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where both pipelines train")
    parser.add_argument("--dev-archive", type=Path, default=DEV_ARCHIVE, help=f"default: {DEV_ARCHIVE}")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: PyTorch sees no CUDA GPU here")
    torch.manual_seed(0)
    cfg = project_config("technique=augment", f"techniques.augment.image_size={args.image_size}")
    _, prepared = dev_split(args.workdir, args.dev_archive)
    records, classes = load_manifest(prepared)
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[r.label] for r in records])
    rows = {s: np.array([i for i, r in enumerate(records) if r.split == s]) for s in ("train", "val", "test")}

    t = time.perf_counter()
    images = image_array(
        [r.file for r in records],
        args.image_size,
        args.workdir / "cache",
        manifest_digest(prepared / "manifest.csv"),
        cfg.data.workers,
        False,
        cfg.data.image_limits,
    )
    cache_s = time.perf_counter() - t

    default_precision = resolve_precision(str(cfg.trainer.precision), "gpu" if args.device == "cuda" else "cpu")
    folder = imagefolder(records, rows["train"], args.workdir / "imagefolder-train")
    runs = {
        "reference (ImageFolder + PIL + torchvision transforms, 2 workers, fp32 NCHW)": reference(
            cfg, folder, args.warmup, args.steps, args.device
        )
    }
    variants = [(default_precision, cfg.trainer.channels_last, False)]
    if not args.skip_variants:
        variants += [
            (p, cl, False) for p in ("32-true", "bf16-mixed") for cl in (False, True) if (p, cl, False) != variants[0]
        ]
    if args.compile:
        variants.append((*variants[0][:2], True))
    for precision, channels_last, compiled in variants:
        steps = args.steps
        if args.device == "cpu" and precision == "bf16-mixed" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            steps = max(3, args.steps // 5)  # emulated bf16 is slow: fewer steps say enough
        name = f"ours ({precision}, {'channels_last' if channels_last else 'NCHW'}{', compiled' if compiled else ''})"
        runs[name] = ours(
            cfg, images, labels, rows, classes, precision, channels_last, args.warmup, steps, compiled, args.device
        )

    ref_name, ours_name = next(iter(runs)), list(runs)[1]
    flops = step_flops(cfg, classes)
    batch = cfg.techniques["augment"].batch_size
    achieved = flops * runs[ours_name] / batch
    peaks = {
        "bf16": matmul_peak(torch.bfloat16, device=args.device),
        "fp32": matmul_peak(torch.float32, device=args.device),
    }
    print(f"augment stage on {args.device}, {args.image_size} px, batch {batch}, {len(rows['train'])} training images")
    print(f"decode-once cache of {len(records)} images built in {cache_s:.1f} s (once per manifest and size)")
    for name, rate in runs.items():
        print(f"  {name:70s} {rate:7.1f} img/s   {rate / runs[ref_name]:5.2f}x the reference")
    ratio = runs[ours_name] / runs[ref_name]
    print(f"default ({ours_name}) vs reference: {ratio:.2f}x (target >= {TARGET_RATIO}x)")
    print(
        f"training step: {flops / 1e9:.2f} GFLOP per batch; achieved {achieved / 1e9:.1f} GFLOP/s = "
        f"{achieved / peaks['bf16']:.0%} of the measured bf16 matmul peak ({peaks['bf16'] / 1e9:.1f} GFLOP/s), "
        f"{achieved / peaks['fp32']:.0%} of the fp32 peak ({peaks['fp32'] / 1e9:.1f} GFLOP/s) "
        f"(target >= {TARGET_PEAK_FRACTION:.0%} of the bf16 peak)"
    )
    save(
        "train-throughput",
        {
            "device": args.device,
            "image_size": args.image_size,
            "batch_size": batch,
            "warmup_batches": args.warmup,
            "timed_batches": args.steps,
            "images_per_s": {k: round(v, 2) for k, v in runs.items()},
            "ratio_vs_reference": round(ratio, 2),
            "cache_build_s": round(cache_s, 1),
            "step_gflop": round(flops / 1e9, 3),
            "achieved_gflops": round(achieved / 1e9, 2),
            "matmul_peak_gflops": {k: round(v / 1e9, 1) for k, v in peaks.items()},
            "fraction_of_bf16_peak": round(achieved / peaks["bf16"], 3),
            "fraction_of_fp32_peak": round(achieved / peaks["fp32"], 3),
        },
    )


if __name__ == "__main__":
    main()

"""Benchmark 1: training throughput of the `augment` stage, end to end, against a plain reference pipeline.

    python benchmarks/bench_train_throughput.py                 # the default study's augment stage: 150 px, batch 32
    python benchmarks/bench_train_throughput.py --image-size 96  # the quick preset's
    python benchmarks/bench_train_throughput.py --device cuda   # on the GPU (what trainer=gpu trains on)
    python benchmarks/bench_train_throughput.py --assume-no-bf16  # as on a CPU without native bf16
    python benchmarks/bench_train_throughput.py --repeats 5 --skip-variants  # the median ratios of 5 runs

Ours (what `pipelines/train.py technique=augment` runs): the decode-once uint8 cache, a DataLoader without
workers, the batched Keras affine on the training device, channels_last, the precision `auto` picks, inside a
Lightning Trainer. Reference: torchvision ImageFolder + PIL decoding + per-image torchvision transforms (Resize,
RandomAffine, RandomHorizontalFlip, ToTensor, Normalize) in a DataLoader with 2 workers, fp32, NCHW, a plain
PyTorch loop; and the same reference with bf16 autocast and channels_last (the AMP-fair one: ours without the
decode-once cache and the batched augmentation), where bf16 is native. Same network, optimiser, batch size and
images (the dev archive's training split). `--repeats N` measures the three N times and prints the median ratios.

Also: the training step's achieved FLOP/s (counted by torch's FlopCounterMode) as a fraction of this machine's
measured matmul peak in the precision that trained (bf16 where `trainer.precision: auto` picks bf16 autocast, fp32
where the CPU has no native bf16), and the step time of the other precision/layout choices, which is how the
`trainer.precision: auto` and `channels_last: true` defaults were chosen. Where bf16 is not native (hardware.py),
the bf16 peak is measured on small matrices and marked emulated, and the bf16 variants are skipped, saying why.
Every figure is printed as soon as it is measured.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from contextlib import nullcontext
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

import hardware
from common import DEV_ARCHIVE, Progress, dev_split, imagefolder, project_config, save, say
from hardware import Cpu

TARGET_RATIO, TARGET_RATIO_BF16, TARGET_PEAK_FRACTION = 3.5, 2.0, 0.50  # vs the fp32 and bf16 references; of peak
REFERENCE = "reference (ImageFolder + PIL + torchvision transforms, 2 workers, fp32 NCHW)"
REFERENCE_BF16 = "reference bf16 (ImageFolder + PIL + torchvision transforms, 2 workers, bf16 autocast, channels_last)"
FULL_PEAK = ((1024, 2048, 4096), 5)  # matrix sizes, repeats
EMULATED_PEAK = ((256, 512), 2)  # a second or so where bf16 is emulated (4096 took minutes on a 2-core AVX2 CPU)


def now(device: str) -> float:
    """Wall-clock time once the device has finished what it was given (CUDA runs asynchronously)."""
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


class StepClock(L.Callback):
    """Wall-clock time at the end of every training batch, with a progress line every 10."""

    def __init__(self, progress: Progress, device: str = "cpu") -> None:
        self.times: list[float] = []
        self.progress, self.device = progress, device

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(now(self.device))
        self.progress.step()


def timed_trainer(clock: StepClock, precision: str, batches: int, device: str) -> L.Trainer:
    """A Trainer that trains `batches` batches for one epoch and nothing else (no validation, checkpoint, logger or
    progress bar), `clock` timing each batch."""
    return L.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_epochs=1,
        logger=False,
        limit_train_batches=batches,
        limit_val_batches=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
    )


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
    layout = "channels_last" if channels_last else "NCHW"
    clock = StepClock(Progress(f"ours ({precision}, {layout})", warmup + steps + 1), device)
    trainer = timed_trainer(clock, precision, warmup + steps + 1, device)
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


def reference(cfg: Settings, folder: Path, warmup: int, steps: int, device: str = "cpu", bf16: bool = False) -> float:
    """The plain pipeline's img/s: fp32 NCHW, or with `bf16` autocast and channels_last (network and batches)."""
    tech = cfg.techniques["augment"]
    classes = sorted(p.name for p in folder.iterdir())
    spec = networks.make_spec(tech, cfg.backbone, classes)
    dataset = datasets.ImageFolder(
        str(folder), transform=reference_transforms(cfg, tech.image_size, spec["mean"], spec["std"])
    )
    loader = DataLoader(dataset, batch_size=tech.batch_size, shuffle=True, num_workers=2, drop_last=True)
    layout = torch.channels_last if bf16 else torch.contiguous_format
    net = networks.build_net(spec).to(device, memory_format=layout)
    net.train()
    optimizer = make_optimizer(net.parameters(), tech.optimizer)
    autocast = torch.autocast(device, dtype=torch.bfloat16) if bf16 else nullcontext()
    times, progress = [], Progress("reference" + (" bf16" if bf16 else ""), warmup + steps + 1)
    for i, (x, y) in enumerate(loader):
        x, y = x.to(device, memory_format=layout), y.to(device)
        optimizer.zero_grad()
        with autocast:
            logits = net(x)
        loss = F.binary_cross_entropy_with_logits(logits.float().squeeze(1), y.float())
        loss.backward()
        optimizer.step()
        times.append(now(device))
        progress.step()
        if i == warmup + steps:
            break
    return images_per_s(times, warmup, tech.batch_size)


def references(device: str, cpu: Cpu) -> tuple[list[tuple[str, bool]], list[str]]:
    """The references to measure, (name, bf16), and why any was left out: the bf16 one only where bf16 is native."""
    if hardware.bf16_full_size(device, cpu):
        return [(REFERENCE, False), (REFERENCE_BF16, True)], []
    return [(REFERENCE, False)], ["reference bf16 channels_last: bf16 is emulated here"]


def ratios(runs: dict[str, float], ours_name: str) -> dict[str, float]:
    """Ours against each reference measured: {"fp32": x, "bf16": y} (no "bf16" where it was skipped)."""
    against = {"fp32": REFERENCE, "bf16": REFERENCE_BF16}
    return {k: runs[ours_name] / runs[name] for k, name in against.items() if name in runs}


def median_of(repeats: list[dict], key: str) -> float | None:
    values = [r[key] for r in repeats if r.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


def step_flops(cfg: Settings, classes: list[str]) -> float:
    """FLOPs of one training step (forward + backward) of the network at the configured batch and image size."""
    tech = cfg.techniques["augment"]
    net = networks.build_net(networks.make_spec(tech, cfg.backbone, classes))
    x = torch.randn(tech.batch_size, 3, tech.image_size, tech.image_size)
    with FlopCounterMode(display=False) as counter:
        net(x).sum().backward()
    return float(counter.get_total_flops())


def matmul_peak(dtype: torch.dtype, sizes=FULL_PEAK[0], repeats: int = FULL_PEAK[1], device: str = "cpu") -> float:
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


def peak_plan(trained: str, device: str, cpu: Cpu) -> dict[str, tuple[torch.dtype, tuple[int, ...], int, bool]]:
    """The matmul peaks to measure, name -> (dtype, sizes, repeats, emulated): fp32, bf16 (on small matrices, marked
    emulated, where bf16 is not native), and fp16 where that is what trained (a GPU without bf16)."""
    bf16_full = hardware.bf16_full_size(device, cpu)
    plan = {
        "fp32": (torch.float32, *FULL_PEAK, False),
        "bf16": (torch.bfloat16, *(FULL_PEAK if bf16_full else EMULATED_PEAK), not bf16_full),
    }
    if hardware.PEAK_OF_PRECISION.get(trained) == "fp16":
        plan["fp16"] = (torch.float16, *FULL_PEAK, False)
    return plan


def measure_peaks(plan: dict, device: str) -> dict[str, float]:
    """Each planned matmul peak in FLOP/s, printed as it is measured."""
    peaks = {}
    for name, (dtype, sizes, repeats, emulated) in plan.items():
        peaks[name] = matmul_peak(dtype, sizes, repeats, device)
        note = ", EMULATED: not native on this CPU, so no peak to compare with" if emulated else ""
        say(f"{name} matmul peak: {peaks[name] / 1e9:.1f} GFLOP/s (sizes {', '.join(map(str, sizes))}{note})")
    return peaks


def peak_of(trained: str) -> str:
    """The matmul peak a step trained in `trained` (a Lightning precision) is compared with."""
    return hardware.PEAK_OF_PRECISION.get(trained, "fp32")


def variant_plan(default: tuple, device: str, cpu: Cpu, skip: bool, compile: bool) -> tuple[list, list[str]]:
    """The (precision, channels_last, compiled) runs after the default one, and why any were left out."""
    variants, skipped = [], []
    if not skip:
        for precision in ("32-true", "bf16-mixed"):
            for channels_last in (False, True):
                if (precision, channels_last) == tuple(default[:2]):
                    continue
                if precision == "bf16-mixed" and not hardware.bf16_full_size(device, cpu):
                    skipped.append(f"{precision} {'channels_last' if channels_last else 'NCHW'}: bf16 is emulated here")
                else:
                    variants.append((precision, channels_last, False))
    if compile:
        variants.append((*default[:2], True))
    return variants, skipped


def run_name(precision: str, channels_last: bool, compiled: bool) -> str:
    return f"ours ({precision}, {'channels_last' if channels_last else 'NCHW'}{', compiled' if compiled else ''})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=3, help="batches before the clock starts")
    parser.add_argument("--steps", type=int, default=20, help="timed batches")
    parser.add_argument("--repeats", type=int, default=1, help="measure ours and the references N times: the medians")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "smallvision-bench-data")
    parser.add_argument("--skip-variants", action="store_true", help="only ours (default settings) and the reference")
    parser.add_argument("--compile", action="store_true", help="also the default settings with torch.compile")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where both pipelines train")
    parser.add_argument("--dev-archive", type=Path, default=DEV_ARCHIVE, help=f"default: {DEV_ARCHIVE}")
    hardware.add_argument(parser)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: PyTorch sees no CUDA GPU here")
    torch.manual_seed(0)
    cpu = hardware.detect(args.assume_no_bf16)
    cfg = project_config("technique=augment", f"techniques.augment.image_size={args.image_size}")
    default = (
        hardware.trained_precision(cfg.trainer.precision, args.device, cpu),
        cfg.trainer.channels_last,
    )
    batch = cfg.techniques["augment"].batch_size
    say(cpu.describe())
    say(f"augment stage on {args.device}, {args.image_size} px, batch {batch}: trains in {default[0]}")

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
    say(f"decode-once cache of {len(records)} images ready in {cache_s:.1f} s (built once per manifest and size)")
    flops = step_flops(cfg, classes)
    say(f"training step: {flops / 1e9:.2f} GFLOP per batch ({len(rows['train'])} training images)")

    folder = imagefolder(records, rows["train"], args.workdir / "imagefolder-train")
    planned, skipped = references(args.device, cpu)
    for reason in skipped:
        say(f"skipped {reason}")
    runs: dict[str, float] = {}

    def run(precision: str, channels_last: bool, compiled: bool) -> str:
        steps = args.steps
        if precision == "bf16-mixed" and not hardware.bf16_full_size(args.device, cpu):
            steps = max(3, args.steps // 5)  # only where the config asks for bf16 itself: emulated, so fewer steps
            say(f"  bf16 is emulated on this CPU: {steps} timed batches")
        name = run_name(precision, channels_last, compiled)
        runs[name] = ours(
            cfg, images, labels, rows, classes, precision, channels_last, args.warmup, steps, compiled, args.device
        )
        say(
            f"{name}: {runs[name]:.1f} img/s = {runs[name] / runs[REFERENCE]:.2f}x the fp32 reference, "
            f"{flops * runs[name] / batch / 1e9:.1f} GFLOP/s"
        )
        return name

    repeats, plan, peaks, against = [], None, {}, peak_of(default[0])
    for repeat in range(args.repeats):
        if args.repeats > 1:
            say(f"run {repeat + 1} of {args.repeats}:")
        for name, bf16 in planned:
            runs[name] = reference(cfg, folder, args.warmup, args.steps, args.device, bf16)
            say(f"{name}: {runs[name]:.1f} img/s")
        ours_name = run(*default, False)
        ratio = ratios(runs, ours_name)
        achieved = flops * runs[ours_name] / batch
        say(
            f"default ({ours_name}) vs the fp32 reference: {ratio['fp32']:.2f}x (target >= {TARGET_RATIO}x)"
            + (
                f"; vs the bf16 reference: {ratio['bf16']:.2f}x (target >= {TARGET_RATIO_BF16}x)"
                if "bf16" in ratio
                else ""
            )
        )
        if plan is None:  # the peaks once: they do not depend on the pipelines
            plan = peak_plan(default[0], args.device, cpu)
            peaks = measure_peaks(plan, args.device)
        fraction = achieved / peaks[against]
        others = [f"{achieved / p:.0%} of the {k} peak" for k, p in peaks.items() if k != against and not plan[k][3]]
        say(
            f"achieved {achieved / 1e9:.1f} GFLOP/s = {fraction:.0%} of the measured {against} matmul peak, the "
            f"precision that trained (target >= {TARGET_PEAK_FRACTION:.0%})" + "".join(f"; {o}" for o in others)
        )
        repeats.append(
            {
                "images_per_s": {k: round(v, 2) for k, v in runs.items()},
                "ratio_vs_reference": round(ratio["fp32"], 2),
                "ratio_vs_bf16_reference": round(ratio["bf16"], 2) if "bf16" in ratio else None,
                "achieved_gflops": round(achieved / 1e9, 2),
                "fraction_of_trained_peak": round(fraction, 3),
            }
        )
    medians = {k: median_of(repeats, k) for k in ("ratio_vs_reference", "ratio_vs_bf16_reference")}
    medians["fraction_of_trained_peak"] = median_of(repeats, "fraction_of_trained_peak")
    if args.repeats > 1:
        bf16_median = medians["ratio_vs_bf16_reference"]
        say(
            f"median of {args.repeats} runs: {medians['ratio_vs_reference']:.2f}x the fp32 reference "
            f"(target >= {TARGET_RATIO}x)"
            + (f", {bf16_median:.2f}x the bf16 reference (target >= {TARGET_RATIO_BF16}x)" if bf16_median else "")
            + f", {medians['fraction_of_trained_peak']:.0%} of the {against} peak (target >= {TARGET_PEAK_FRACTION:.0%})"
        )

    variants, skipped_variants = variant_plan(default, args.device, cpu, args.skip_variants, args.compile)
    for reason in skipped_variants:
        say(f"skipped {reason}")
    for variant in variants:
        run(*variant)

    say(f"summary, {args.device}, {args.image_size} px, batch {batch} (the last run):")
    for name, rate in runs.items():
        say(f"  {name:100s} {rate:7.1f} img/s   {rate / runs[REFERENCE]:5.2f}x the fp32 reference")
    last = repeats[-1]
    save(
        "train-throughput",
        {
            "device": args.device,
            "image_size": args.image_size,
            "batch_size": batch,
            "warmup_batches": args.warmup,
            "timed_batches": args.steps,
            "trained_precision": default[0],
            "images_per_s": {k: round(v, 2) for k, v in runs.items()},
            "skipped": skipped + skipped_variants,
            "ratio_vs_reference": medians["ratio_vs_reference"],  # the median over repeats (one run: its own)
            "ratio_vs_bf16_reference": medians["ratio_vs_bf16_reference"],  # None where the bf16 one was skipped
            "targets": {"vs_reference": TARGET_RATIO, "vs_bf16_reference": TARGET_RATIO_BF16},
            "repeats": repeats,
            "cache_build_s": round(cache_s, 1),
            "step_gflop": round(flops / 1e9, 3),
            "achieved_gflops": last["achieved_gflops"],
            "matmul_peak_gflops": {k: round(v / 1e9, 1) for k, v in peaks.items()},
            "matmul_peak_sizes": {k: list(v[1]) for k, v in plan.items()},
            "matmul_peak_emulated": [k for k, v in plan.items() if v[3]],
            "peak_precision": against,
            "fraction_of_trained_peak": medians["fraction_of_trained_peak"],
            **{
                f"fraction_of_{k}_peak": round(last["achieved_gflops"] * 1e9 / p, 3)
                for k, p in peaks.items()
                if not plan[k][3]
            },
        },
        cpu,
    )


if __name__ == "__main__":
    main()

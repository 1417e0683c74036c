"""Where benchmark 1's time goes: the augment stage's input pipeline and training step, by operator.

    python benchmarks/profile_step.py
    python benchmarks/profile_step.py --assume-no-bf16  # as on a CPU without native bf16 (fp32)
    python benchmarks/profile_step.py --batch-sizes 32 64 128  # the step alone at larger batches too

Times, on random images, one batch's input pipeline (uint8 -> float, batched Keras affine, normalise,
channels_last) and one training step (in the precision `trainer.precision: auto` picks for what the CPU offers:
bf16 autocast where bf16 is native, fp32 elsewhere; channels_last, RMSprop) of the book's small convnet at
150 px, batch 32, and prints the step's operators by self CPU time. The step alone on an in-memory batch, in
images per second, is the ceiling of any input pipeline's throughput for this network (benchmark 1's ratios
included); `--batch-sizes` times it, on random tensors, at each batch size given.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext
from functools import partial

import torch
import torch.nn.functional as F

from smallvision import networks
from smallvision.data.augmentation import AffineConfig, random_affine
from smallvision.modules.optim import make_optimizer

import hardware
from common import project_config, say

BATCH, SIZE = 32, 150


def milliseconds(fn, repeats: int = 10) -> float:
    fn()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats * 1000


def train_step(net: torch.nn.Module, optimizer, x: torch.Tensor, labels: torch.Tensor, bf16: bool) -> None:
    optimizer.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
        logits = net(x)
    F.binary_cross_entropy_with_logits(logits.float().squeeze(1), labels).backward()
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[], help="also the step alone at each")
    hardware.add_argument(parser)
    args = parser.parse_args()
    cpu = hardware.detect(args.assume_no_bf16)
    cfg = project_config("technique=augment", f"techniques.augment.image_size={SIZE}")
    precision = hardware.trained_precision(cfg.trainer.precision, "cpu", cpu)
    say(f"{cpu.describe()}: the step trains in {precision}")
    bf16 = precision.startswith("bf16")
    tech = cfg.techniques["augment"]
    spec = networks.make_spec(tech, cfg.backbone, ["a", "b"])
    net = networks.build_net(spec).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(net.parameters(), tech.optimizer)
    augmentation = AffineConfig.of(cfg.augmentation)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (BATCH, SIZE, SIZE, 3), dtype=torch.uint8)
    labels = torch.randint(0, 2, (BATCH,)).float()

    def prepare() -> torch.Tensor:
        x = random_affine(images.permute(0, 3, 1, 2).float(), augmentation, generator=generator)
        return (x / 255).contiguous(memory_format=torch.channels_last)

    x = prepare()

    step = partial(train_step, net, optimizer, x, labels, bf16)
    say(f"input pipeline: {milliseconds(prepare):.1f} ms per batch of {BATCH}")
    say(f"training step ({'bf16 autocast' if bf16 else 'fp32'}, channels_last): {milliseconds(step):.1f} ms per batch")
    for size in args.batch_sizes:
        batch = torch.rand(size, 3, SIZE, SIZE).contiguous(memory_format=torch.channels_last)
        targets = torch.randint(0, 2, (size,)).float()
        ms = milliseconds(partial(train_step, net, optimizer, batch, targets, bf16), repeats=max(3, 320 // size))
        say(f"the step alone, batch {size}: {ms:.0f} ms, {size / ms * 1000:.1f} img/s (any input pipeline's ceiling)")
    with torch.profiler.profile() as prof:
        for _ in range(5):
            step()
    say(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


if __name__ == "__main__":
    main()

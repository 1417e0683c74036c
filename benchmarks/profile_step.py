"""Where benchmark 1's time goes: the augment stage's input pipeline and bf16 training step, by operator.

    python benchmarks/profile_step.py

Times, on random images, one batch's input pipeline (uint8 -> float, batched Keras affine, normalise,
channels_last) and one training step (bf16 autocast, channels_last, RMSprop) of the book's small convnet at
150 px, batch 32, and prints the step's operators by self CPU time.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from smallvision import networks
from smallvision.data.augmentation import AffineConfig, random_affine
from smallvision.modules.optim import make_optimizer

from common import project_config

BATCH, SIZE = 32, 150


def milliseconds(fn, repeats: int = 10) -> float:
    fn()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats * 1000


def main() -> None:
    cfg = project_config("technique=augment", f"techniques.augment.image_size={SIZE}")
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

    def step() -> None:
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = net(x)
        F.binary_cross_entropy_with_logits(logits.float().squeeze(1), labels).backward()
        optimizer.step()

    print(f"input pipeline: {milliseconds(prepare):.1f} ms per batch of {BATCH}")
    print(f"training step (bf16 autocast, channels_last): {milliseconds(step):.1f} ms per batch")
    with torch.profiler.profile() as prof:
        for _ in range(5):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


if __name__ == "__main__":
    main()

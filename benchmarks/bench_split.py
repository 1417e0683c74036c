"""Benchmark 6: the `split` stage on 25,000 generated 500x375 JPEGs (the size of the full Microsoft download).

    python benchmarks/bench_split.py                  # 12,500 per class, PetImages/<Class>/N.jpg
    python benchmarks/bench_split.py --per-class 2000

Times `prepare_split` as the stage runs it (every core, with its progress bar) against the same validation on
one process, measured in the same run on the same files (both read them from the page cache).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from smallvision.data.split import available_cores, prepare_split
from smallvision.schema import Split

from common import project_config, save, say

TARGET_S = 120
WIDTH, HEIGHT = 500, 375


def _photo_like(job: tuple[Path, int]) -> None:
    """A JPEG with smooth structure and fine noise, so it compresses (and decodes) like a photo, not like noise."""
    path, seed = job
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.005, 0.05, 2).tolist() + [rng.uniform(0, 6.28)]
        channels.append(127 + 80 * np.sin(fx * x + fy * y + phase) + rng.normal(0, 12, (HEIGHT, WIDTH)))
    pixels = np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def generate(raw: Path, per_class: int) -> float:
    jobs = []
    for c, label in enumerate(("Cat", "Dog")):
        (raw / "PetImages" / label).mkdir(parents=True, exist_ok=True)
        jobs += [(raw / "PetImages" / label / f"{i}.jpg", c * per_class + i) for i in range(per_class)]
    todo = [job for job in jobs if not job[0].exists()]
    with ProcessPoolExecutor(available_cores()) as pool:
        list(pool.map(_photo_like, todo, chunksize=64))
    return sum(job[0].stat().st_size for job in jobs) / len(jobs)


def timed_split(raw: Path, out: Path, workers: int, per_class: int) -> float:
    amounts = Split(train=per_class // 2, val=per_class // 4, test=per_class // 4)
    limits = project_config().data.image_limits
    t = time.perf_counter()
    report = prepare_split(
        raw, out, split=amounts, seed=42, classes=None, workers=workers, limits=limits, progress=True
    )
    elapsed = time.perf_counter() - t
    kept = sum(sum(c.values()) for c in report.counts.values())
    assert kept == 2 * per_class and not report.dropped, "every generated image must be kept"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=12_500)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "smallvision-bench-split")
    args = parser.parse_args()
    raw = args.workdir / f"raw-{args.per_class}"
    say(f"generating {2 * args.per_class} JPEGs of {WIDTH}x{HEIGHT} in {raw} (those already there are kept)")
    t = time.perf_counter()
    mean_bytes = generate(raw, args.per_class)
    say(
        f"{2 * args.per_class} JPEGs of {WIDTH}x{HEIGHT} (mean {mean_bytes / 1024:.0f} KiB) ready in "
        f"{time.perf_counter() - t:.0f} s"
    )
    cores, n = available_cores(), 2 * args.per_class
    say(f"split on {cores} cores, as the stage runs it:")
    ours = timed_split(raw, args.workdir / "prepared-parallel", None, args.per_class)
    say(f"split of {n} images: {ours:.1f} s on {cores} cores ({n / ours:.0f} img/s; target <= {TARGET_S} s)")
    say("the reference, the same validation on one process:")
    one = timed_split(raw, args.workdir / "prepared-serial", 1, args.per_class)
    say(f"one process: {one:.1f} s; the stage is {one / ours:.2f}x faster")
    save(
        "split",
        {
            "images": n,
            "width": WIDTH,
            "height": HEIGHT,
            "mean_kib": round(mean_bytes / 1024, 1),
            "cores": cores,
            "split_s": round(ours, 1),
            "one_process_s": round(one, 1),
            "speedup": round(one / ours, 2),
            "target_s": TARGET_S,
            "cpu_count": os.cpu_count(),
        },
    )


if __name__ == "__main__":
    main()

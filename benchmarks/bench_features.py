"""Benchmark 3: feature-extraction images/s per backbone, against a plain reference pipeline.

    python benchmarks/bench_features.py                       # efficientnet_lite0, resnet50, vgg16
    python benchmarks/bench_features.py --backbone vgg16 --images 256
    python benchmarks/bench_features.py --assume-no-bf16     # as on a CPU without native bf16 (ours in fp32)

Ours (what `feature-extract` runs to build its cache): the decode-once uint8 images, Lightning `predict`
(inference mode) at the stage's extract batch size, channels_last, the precision `auto` picks for what the CPU
offers (hardware.py: bf16 autocast only where bf16 is native). Reference:
torchvision ImageFolder + PIL decoding + Resize/ToTensor/Normalize in a DataLoader with 2 workers, fp32, NCHW,
`torch.no_grad`, the book's batch of 20. Both run the same base and pooling on the same images. Throughput does
not depend on the weights' values, so backbones whose weights cannot be had offline run with random weights.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from smallvision.data.cache import image_array
from smallvision.data.manifest import load_manifest, manifest_digest
from smallvision.data.preprocess import backbone_normalisation
from smallvision.features import FeatureExtractor, cached_features
from smallvision.models import backbones
from smallvision.schema import Backbone, Settings

import hardware
from common import dev_split, imagefolder, project_config, save, say

BACKBONES = ("efficientnet_lite0", "resnet50", "vgg16")
REFERENCE_BATCH = 20  # the book's feature-extraction batch


def base_model(bb: dict) -> tuple[torch.nn.Module, str]:
    try:
        return backbones.create_backbone(bb), "pretrained"
    except Exception:  # noqa: BLE001 - no offline weights for this backbone: speed is the same with random ones
        return backbones.create_backbone(
            {**bb, "weights": {**bb["weights"], "source": "none"}}, allow_random=True
        ), "random"


def ours(base, bb: Backbone, cfg: Settings, images: np.ndarray, batch: int, precision: str) -> float:
    trainer_cfg = cfg.trainer
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        precision=precision,
    )
    extractor = FeatureExtractor(base, bb.head_pool, *backbone_normalisation(bb), trainer_cfg.channels_last)
    cached_features(trainer, extractor, images[:batch], Path(tempfile.mktemp(suffix=".npy")), batch)  # warm-up
    t = time.perf_counter()
    cached_features(trainer, extractor, images, Path(tempfile.mktemp(suffix=".npy")), batch)
    return len(images) / (time.perf_counter() - t)


def reference(base, bb: Backbone, folder: Path) -> tuple[float, int]:
    size = bb.image_size
    dataset = datasets.ImageFolder(
        str(folder),
        transform=transforms.Compose(
            [transforms.Resize((size, size)), transforms.ToTensor(), transforms.Normalize(*backbone_normalisation(bb))]
        ),
    )
    loader = DataLoader(dataset, batch_size=REFERENCE_BATCH, num_workers=2)
    base = base.eval()
    seen, started = 0, None
    with torch.no_grad():
        for x, _ in loader:
            backbones.pool_features(backbones.extract_features(base, x), bb.head_pool)
            if started is None:  # the first batch warms up (workers start, kernels pick algorithms)
                started = time.perf_counter()
            else:
                seen += len(x)
    return seen / (time.perf_counter() - started), len(dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", action="append", choices=BACKBONES, help="default: all three")
    parser.add_argument("--images", type=int, default=320, help="images timed per pipeline")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "smallvision-bench-data")
    hardware.add_argument(parser)
    args = parser.parse_args()
    cpu = hardware.detect(args.assume_no_bf16)
    say(cpu.describe())
    _, prepared = dev_split(args.workdir)
    records, _ = load_manifest(prepared)
    subset = np.arange(min(args.images + REFERENCE_BATCH, len(records)))  # + one warm-up batch for the reference
    digest = manifest_digest(prepared / "manifest.csv")
    results = {}
    for name in args.backbone or BACKBONES:
        cfg = project_config(f"backbone={name}")
        bb = cfg.backbone
        base, weights = base_model(bb.model_dump())
        images = image_array(
            [r.file for r in records],
            bb.image_size,
            args.workdir / "cache",
            digest,
            cfg.data.workers,
            False,
            cfg.data.image_limits,
        )[subset[REFERENCE_BATCH:]]
        batch = cfg.techniques["feature_extract"].extract_batch_size
        precision = hardware.trained_precision(cfg.trainer.precision, "cpu", cpu)
        ref, _ = reference(base, bb, imagefolder(records, subset, args.workdir / f"imagefolder-first-{len(subset)}"))
        say(f"{name:20s} reference {ref:6.1f} img/s (fp32, batch {REFERENCE_BATCH})")
        mine = ours(base, bb, cfg, np.ascontiguousarray(images), batch, precision)
        say(
            f"{name:20s} {bb.image_size} px ({weights} weights): ours {mine:6.1f} img/s ({precision}, "
            f"batch {batch}): {mine / ref:.2f}x the reference"
        )
        results[name] = {
            "image_size": bb.image_size,
            "weights": weights,
            "ours_images_per_s": round(mine, 2),
            "reference_images_per_s": round(ref, 2),
            "ratio": round(mine / ref, 2),
            "batch": batch,
            "precision": precision,
        }
    save("features", {"images": len(subset) - REFERENCE_BATCH, "backbones": results}, cpu)


if __name__ == "__main__":
    main()

"""Feature extraction: run the frozen pretrained base once over every image, cache the pooled features.

The cache file is keyed by everything that changes the features: backbone name and weight source, input
normalisation, the resize geometry (size, crop or squash, crop fraction, interpolation), pooling, precision and the
manifest's content, and whether the images were flipped horizontally (the second view that test-time augmentation
and flip-augmented head training read). Under DDP each rank extracts a
disjoint shard and the features are gathered back in manifest order, no duplicates, no gaps.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from smallvision.data.datamodule import ArrayDataset
from smallvision.data.images import Resize
from smallvision.data.preprocess import backbone_normalisation, network_input
from smallvision.errors import DataError
from smallvision.files import atomic_write
from smallvision.models.backbones import extract_features, pool_features
from smallvision.schema import Backbone
from smallvision.shards import ShardSampler, gather_shards


def features_key(
    backbone: Backbone, resize: Resize, pool: str, manifest_digest: str, precision: str, flip: bool = False
) -> str:
    """Identifies cached features: everything that changes them, down to the input normalisation, the resize
    geometry and the precision the base ran in."""
    mean, std = backbone_normalisation(backbone)
    ident = {
        "timm_name": backbone.timm_name,
        "weights": backbone.weights.model_dump(),
        "mean": mean,
        "std": std,
        "resize": resize.to_dict(),
        "pool": pool,
        "manifest": manifest_digest,
        "precision": precision,
        "flip": flip,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def features_path(cache_dir: Path, backbone_name: str, key: str) -> Path:
    return Path(cache_dir) / backbone_name / f"features-{key}.npy"


class FeatureExtractor(L.LightningModule):
    """Frozen base in eval mode; predict_step returns pooled features with their row index (of the horizontally
    flipped images with `flip`)."""

    def __init__(self, base: torch.nn.Module, pool: str, mean, std, channels_last: bool, flip: bool = False) -> None:
        super().__init__()
        self.base = base.eval()
        self.pool = pool
        self.flip = flip
        self.mean, self.std = list(mean), list(std)
        self.channels_last = channels_last
        if channels_last:
            self.base = self.base.to(memory_format=torch.channels_last)
        self.parts: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.result: np.ndarray | None = None

    def predict_step(self, batch, batch_idx: int):
        x, _, idx = batch
        x = network_input(x.flip(2) if self.flip else x, self.mean, self.std, self.channels_last)  # NHWC: W is dim 2
        feats = pool_features(extract_features(self.base, x), self.pool).float()
        self.parts.append((idx, feats.half()))

    def on_predict_epoch_end(self) -> None:
        idx = torch.cat([p[0] for p in self.parts]).to(self.device)
        feats = torch.cat([p[1] for p in self.parts]).to(self.device)
        self.parts = []
        gathered = gather_shards(self, {"idx": idx, "feats": feats})
        idx, feats = gathered["idx"], gathered["feats"]
        if not torch.equal(idx.cpu(), torch.arange(len(idx))):
            raise RuntimeError("feature extraction lost or duplicated images")  # a bug, never user error
        self.result = feats.cpu().numpy()


def cached_features(
    trainer: L.Trainer, extractor: FeatureExtractor, images: np.ndarray, target: Path, batch_size: int
) -> np.ndarray:
    """Features of every row of `images`, from `target` when cached, else extracted with `trainer` and cached."""
    if target.exists():
        return np.load(target)
    if len(images) < trainer.world_size:  # a rank without images would leave the others waiting in the gather
        raise DataError(
            f"{len(images)} images to extract features from but {trainer.world_size} processes: "
            "use fewer devices (trainer.devices)"
        )
    ds = ArrayDataset(images, np.zeros(len(images), dtype=np.int64), np.arange(len(images)))
    loader = DataLoader(
        ds, batch_size=batch_size, sampler=ShardSampler(len(ds), trainer.global_rank, trainer.world_size)
    )
    with torch.random.fork_rng(devices=[]):  # the loader draws a seed: training then starts as from the cache
        trainer.predict(extractor, dataloaders=loader, return_predictions=False)
    feats = extractor.result
    if trainer.is_global_zero:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda tmp: np.save(tmp, feats))
    return feats

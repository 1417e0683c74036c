"""Train one technique end to end: data, network, Lightning Trainer, checkpoint selection on validation,
one evaluation on test, and the outputs DVC and MLflow read (metrics.json, history.csv, predictions, confusion).
"""

from __future__ import annotations

import csv
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only

from smallvision import techniques
from smallvision.data.augmentation import AffineConfig
from smallvision.data.cache import image_array, manifest_digest
from smallvision.data.datamodule import SPLITS, ArrayDataModule, SplitArrays
from smallvision.data.images import DEFAULT_MAX_PIXELS
from smallvision.data.split import load_manifest
from smallvision.errors import ConfigError, DataError
from smallvision.features import FeatureExtractor, cached_features, features_key, features_path
from smallvision.files import atomic_write, atomic_write_text
from smallvision.metrics import confusion_matrix, wilson_interval
from smallvision.models import backbones
from smallvision.models.convnet import MIN_IMAGE_SIZE
from smallvision.modules.classifier import ClassifierModule, ImageInput

CHECKPOINT = "best.ckpt"

# Lightning notices about choices made on purpose here: frozen modules are kept in eval mode, the input
# pipeline lives in the module's on_after_batch_transfer, feature extraction collects its own outputs, and
# epoch metrics are gathered by the module itself (identical on every rank, so logging needs no sync_dist).
for _notice in (r"Found \d+ module\(s\) in eval mode", r"You have overridden `on_after_batch_transfer`",
                r"predict returned None", r".*does not have many workers", r"It is recommended to use `self\.log\("):
    warnings.filterwarnings("ignore", message=_notice)


@dataclass
class Paths:
    prepared: Path
    cache: Path
    features: Path
    out: Path          # this technique's output folder
    models: Path       # where the other techniques' folders are (fine-tune reads feature_extract's)
    feature_extract: Path | None = None  # the checkpoint fine-tune starts from; None: models/feature_extract/best.ckpt


def validate(cfg: dict) -> dict:
    """Check the selected technique's settings before any heavy work; return its config."""
    name = cfg.get("technique")
    known = sorted(cfg.get("techniques", {}))
    if name not in known:
        raise ConfigError(f"technique={name!r} is unknown; allowed: {', '.join(known)}")
    tech = cfg["techniques"][name]
    if tech.get("kind") not in techniques.KINDS:
        raise ConfigError(f"techniques.{name}.kind={tech.get('kind')!r} is unknown; allowed: {', '.join(techniques.KINDS)}")
    for key in ("batch_size", "epochs", "image_size"):
        value = tech.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"techniques.{name}.{key}={value!r} must be a positive integer")
    if tech["kind"] == "scratch" and tech["image_size"] < MIN_IMAGE_SIZE:
        raise ConfigError(f"techniques.{name}.image_size={tech['image_size']} is too small for the small convnet: "
                          f"it needs at least {MIN_IMAGE_SIZE} px (4 x conv3x3 + pool2)")
    lr = tech.get("optimizer", {}).get("lr")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or lr <= 0:
        raise ConfigError(f"techniques.{name}.optimizer.lr={lr!r} must be a positive number")
    if tech["kind"] == "feature_extract" and tech.get("mode", "cached") not in ("cached", "augmented"):
        raise ConfigError(f"techniques.{name}.mode={tech.get('mode')!r} is unknown; allowed: cached, augmented")
    if tech["kind"] != "scratch":
        missing = [k for k in ("units", "dropout", "pool") if k not in (tech.get("head") or {})]
        if missing:
            raise ConfigError(f"techniques.{name}.head needs {', '.join(missing)} (the dense head on the base)")
    augmentation(cfg)  # raises ConfigError on a bad or misspelt transform key
    return tech


def augmentation(cfg: dict) -> AffineConfig | None:
    """The transforms the selected technique trains on; None when it trains on plain images (also feature-extract
    in cached mode: its features are computed once, from plain images)."""
    tech = cfg["techniques"][cfg["technique"]]
    if not tech.get("augment") or techniques.is_cached(tech):
        return None
    return AffineConfig.from_mapping(cfg["augmentation"])


def resolve_precision(precision: str, accelerator: str) -> str:
    """`auto`: bf16 autocast where the hardware runs it natively, else fp32.

    On a CPU without AVX512-BF16/AMX, bf16 autocast is emulated and measured ~7x slower than fp32 (benchmarks/).
    """
    if precision != "auto":
        return precision
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "32-true"


def make_trainer(trainer_cfg: dict, epochs: int, out: Path, logger, callbacks) -> L.Trainer:
    return L.Trainer(
        accelerator=trainer_cfg["accelerator"], devices=trainer_cfg["devices"], num_nodes=trainer_cfg["num_nodes"],
        strategy=trainer_cfg["strategy"],
        precision=resolve_precision(str(trainer_cfg["precision"]), trainer_cfg["accelerator"]), max_epochs=epochs,
        logger=logger, callbacks=callbacks, default_root_dir=str(out),
        enable_progress_bar=trainer_cfg.get("progress", True), deterministic=trainer_cfg.get("deterministic", False),
        log_every_n_steps=trainer_cfg.get("log_every_n_steps", 10), num_sanity_val_steps=0,
        use_distributed_sampler=False,  # our samplers keep evaluation exact (see data/datamodule.py)
        enable_model_summary=False,
    )


def _labels_and_rows(records, classes) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[r.label] for r in records], dtype=np.int64)
    rows = {s: np.array([i for i, r in enumerate(records) if r.split == s], dtype=np.int64) for s in SPLITS}
    for split, r in rows.items():
        if len(r) == 0:
            raise DataError(f"the manifest has no {split!r} images: rerun the split stage")
    return labels, rows


def train_technique(cfg: dict, paths: Paths, logger=None, progress: bool = True) -> dict:
    """Train and test the technique `cfg["technique"]`; return its metrics (rank 0 writes the outputs)."""
    tech = validate(cfg)
    name, kind, seed = cfg["technique"], tech["kind"], int(cfg["seed"])
    started = time.time()
    L.seed_everything(seed, workers=True, verbose=False)
    records, classes = load_manifest(paths.prepared)
    labels, rows = _labels_and_rows(records, classes)
    digest = manifest_digest(paths.prepared / "manifest.csv")
    tcfg = cfg["trainer"]
    data_cfg = cfg.get("data", {})
    # metrics.json means "this folder holds a finished run": drop an earlier run's before best.ckpt is overwritten,
    # so a run killed half-way (outside DVC, which removes its outs itself) never looks finished
    (paths.out / "metrics.json").unlink(missing_ok=True)

    checkpoint = ModelCheckpoint(dirpath=str(paths.out), filename=CHECKPOINT.removesuffix(".ckpt"), monitor="val_acc",
                                 mode="max", save_top_k=1, save_weights_only=True, enable_version_counter=False)
    trainer = make_trainer(tcfg, tech["epochs"], paths.out, logger or False, [checkpoint])

    images = image_array([r.file for r in records], tech["image_size"], paths.cache, digest, data_cfg.get("workers"),
                         progress, data_cfg.get("max_image_pixels", DEFAULT_MAX_PIXELS))
    transforms = augmentation(cfg)
    channels_last = bool(tcfg.get("channels_last", False))
    frozen: list[torch.nn.Module] = []

    if kind == "scratch":
        spec = techniques.make_spec(tech, cfg["backbone"], classes)
        net = techniques.build_net(spec)
        array, image_input = images, ImageInput(tuple(spec["mean"]), tuple(spec["std"]), transforms, channels_last)
    else:
        bb = cfg["backbone"]
        pool = tech["head"]["pool"]
        base = backbones.create_backbone(bb)
        in_features = backbones.feature_dim(base, tech["image_size"], pool)
        if techniques.is_cached(tech):
            spec = techniques.make_spec(tech, bb, classes, in_features)
            key = features_key(bb, tech["image_size"], pool, digest, str(trainer.precision))
            target = features_path(paths.features, bb["name"], key)
            extractor = FeatureExtractor(base, pool, bb["mean"], bb["std"], channels_last)
            array = cached_features(trainer, extractor, images, target, tech.get("extract_batch_size", 64))
            net, image_input = techniques.build_head(spec), None
        else:
            spec = techniques.make_spec(tech, bb, classes, in_features)
            net = techniques.TransferNet(base, techniques.build_head(spec), pool)
            unfreeze = 0
            if kind == "fine_tune":
                unfreeze = tech.get("unfreeze_blocks", 1)
                head = paths.feature_extract or paths.models / "feature_extract" / CHECKPOINT
                net.head.load_state_dict(_trained_head(head, spec))
            frozen = backbones.freeze_base(net.base, unfreeze)
            array, image_input = images, ImageInput(tuple(bb["mean"]), tuple(bb["std"]), transforms, channels_last)

    if tcfg.get("compile"):
        net.compile()  # in place (state_dict keys unchanged, so checkpoints stay loadable); compiles on the 1st step
    module = ClassifierModule(net, len(classes), tech["optimizer"], image_input, frozen=frozen, seed=seed, spec=spec)
    data = ArrayDataModule(SplitArrays(array, labels, rows, classes), tech["batch_size"], seed,
                           eval_batch_size=tech["eval_batch_size"], num_workers=tcfg.get("num_workers", 0))
    trainer.fit(module, datamodule=data)
    if not checkpoint.best_model_path:
        raise DataError("training produced no checkpoint (no validation epoch ran)")
    trainer.test(module, datamodule=data, ckpt_path=checkpoint.best_model_path, verbose=False)

    results = module.test_results
    best_epoch = int(np.argmax([h["val_acc"] for h in module.history])) + 1
    low, high = wilson_interval(results["correct"], results["n"])
    metrics = {
        "technique": name, "kind": kind, "backbone": cfg["backbone"]["name"] if kind != "scratch" else "small_convnet",
        "test_accuracy": results["acc"], "test_loss": results["loss"], "test_images": results["n"],
        "test_correct": results["correct"], "ci95_low": low, "ci95_high": high,
        "best_epoch": best_epoch, "best_val_accuracy": module.history[best_epoch - 1]["val_acc"],
        "epochs": tech["epochs"], "image_size": tech["image_size"], "seed": seed,
        "train_images": len(rows["train"]), "wall_time_s": round(time.time() - started, 1),
    }
    if trainer.is_global_zero:
        write_outputs(paths.out, metrics, module.history, results["samples"], records, rows["test"], classes)
    return metrics


def _trained_head(checkpoint: Path, spec: dict) -> dict:
    """The dense head's weights from the feature-extract checkpoint (cached or augmented mode)."""
    if not checkpoint.exists():
        raise DataError(f"fine-tune starts from the feature-extract head, but {checkpoint} does not exist: "
                        "run the feature-extract stage first (dvc repro feature-extract)")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    trained = state["hyper_parameters"]["spec"]
    if trained.get("backbone", {}).get("timm_name") != spec["backbone"]["timm_name"] or trained["head"] != spec["head"]:
        raise ConfigError(f"{checkpoint} was trained for backbone {trained.get('backbone', {}).get('timm_name')!r} with "
                          f"head {trained.get('head')}, but fine-tune is configured for {spec['backbone']['timm_name']!r} "
                          f"with head {spec['head']}: rerun feature-extract with the same backbone")
    prefix = "net." if trained["kind"] == "head" else "net.head."
    return {k.removeprefix(prefix): v for k, v in state["state_dict"].items() if k.startswith(prefix)}


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


@rank_zero_only
def write_outputs(out: Path, metrics: dict, history: list[dict], samples: dict, records, test_rows, classes) -> None:
    """history.csv, test_predictions.csv, confusion.json, then metrics.json last: its presence means finished."""
    out.mkdir(parents=True, exist_ok=True)
    lines = ["epoch,train_loss,train_acc,val_loss,val_acc"]
    lines += [f"{h['epoch']},{h['train_loss']:.6f},{h['train_acc']:.6f},{h['val_loss']:.6f},{h['val_acc']:.6f}"
              for h in history]
    atomic_write_text(out / "history.csv", "\n".join(lines) + "\n")
    y, pred, prob = samples["y"].numpy(), samples["pred"].numpy(), samples["prob"].numpy()
    rows = [["path", "actual", "predicted", "probability"]]
    rows += [[str(records[r].path), classes[int(a)], classes[int(p)], f"{q:.6f}"]
             for r, a, p, q in zip(test_rows, y, pred, prob)]
    atomic_write(out / "test_predictions.csv", lambda tmp: _write_csv(tmp, rows))
    atomic_write_text(out / "confusion.json", json.dumps(
        {"classes": classes, "matrix": confusion_matrix(y, pred, len(classes))}, indent=2))
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))

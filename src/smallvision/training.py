"""Train one technique end to end: data, network, Lightning Trainer, checkpoint selection on validation,
one evaluation on test, and the outputs DVC and MLflow read (`smallvision.runs`)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import ModelCheckpoint

from smallvision import provenance, techniques
from smallvision.data.augmentation import AffineConfig
from smallvision.data.cache import image_array
from smallvision.data.datamodule import ArrayDataModule, SplitArrays
from smallvision.data.manifest import MANIFEST, SPLITS, load_manifest, manifest_digest
from smallvision.errors import DataError
from smallvision.models.depthwise import use_fp32_depthwise_grads
from smallvision.modules.classifier import ClassifierModule
from smallvision.networks import input_resize, network_name
from smallvision.runs import CHECKPOINT, METRICS, write_outputs
from smallvision.schema import Folders, Settings
from smallvision.schema_techniques import FeatureExtract, Modern
from smallvision.starting_point import StartingPoint, best_row, trained_rows
from smallvision.stats import wilson_interval
from smallvision.trainer import early_stopping, expected_notices_hidden, make_trainer

log = logging.getLogger(__name__)


@dataclass
class Paths:
    prepared: Path
    cache: Path
    features: Path
    out: Path  # this technique's output folder
    models: Path  # where the other techniques' folders are
    head_checkpoint: Path | None = None  # the checkpoint fine-tune starts from; None: models/feature_extract/best.ckpt

    @classmethod
    def of(cls, folders: Folders, root: Path, out: Path, head_checkpoint: Path | None = None) -> Paths:
        """The project's folders (settings.paths, relative to `root`) with the job's output folder `out`."""
        return cls(
            prepared=root / folders.prepared,
            cache=root / folders.cache,
            features=root / folders.features,
            out=out,
            models=root / folders.models,
            head_checkpoint=head_checkpoint,
        )


def augmentation(settings: Settings) -> AffineConfig | None:
    """The transforms the selected technique trains on; None when it trains on plain images (also feature-extract
    in cached mode: its features are computed once, from plain images). The modern technique has its own
    transforms (`techniques.modern.augmentation`); the others augment with the `augmentation` group."""
    tech = settings.selected
    if isinstance(tech, Modern):
        return AffineConfig.of(tech.augmentation)
    if not tech.augment or tech.cached:
        return None
    return AffineConfig.of(settings.augmentation)


def _labels_and_rows(records, classes) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[r.label] for r in records], dtype=np.int64)
    rows = {s: np.array([i for i, r in enumerate(records) if r.split == s], dtype=np.int64) for s in SPLITS}
    for split, r in rows.items():
        if len(r) == 0:
            raise DataError(f"the manifest has no {split!r} images: rerun the split stage")
    return labels, rows


@dataclass
class Job:
    """What a technique trains on: the manifest, the network's setup, the LightningModule and the data."""

    records: list
    classes: list[str]
    digest: str  # the manifest's
    rows: dict[str, np.ndarray]
    setup: techniques.Setup
    module: ClassifierModule
    data: ArrayDataModule


def classifier_module(settings: Settings, setup: techniques.Setup, num_classes: int) -> ClassifierModule:
    """The LightningModule that trains the selected technique's network `setup` (its slow depthwise convs take
    fp32 gradients with `trainer.fp32_depthwise_grads`; compiled in place with `trainer.compile`)."""
    tech = settings.selected
    if settings.trainer.fp32_depthwise_grads:
        use_fp32_depthwise_grads(setup.net)  # in place; acts only on a CPU under bf16 autocast
    if settings.trainer.compile:
        setup.net.compile()  # in place (state_dict keys unchanged, so checkpoints still load); compiles on step 1
    return ClassifierModule(
        setup.net,
        num_classes,
        tech.optimizer,
        setup.image_input,
        frozen=setup.frozen,
        seed=settings.seed,
        spec=setup.spec,
        schedule=tech.lr_schedule,
        tta=tech.tta,
        label_smoothing=tech.label_smoothing,
        feature_flips=isinstance(tech, FeatureExtract) and tech.cached and tech.cached_flips,
        **(
            {"mixup_alpha": tech.mixup_alpha, "cutmix_alpha": tech.cutmix_alpha, "ema_decay": tech.ema_decay}
            if isinstance(tech, Modern)
            else {}
        ),
    )


def prepare(settings: Settings, paths: Paths, trainer: L.Trainer, progress: bool) -> Job:
    """The data and the module of the selected technique, built to train with `trainer` (which also runs the
    feature extraction of cached mode); shared by training and the learning-rate finder."""
    tech, seed, tcfg = settings.selected, settings.seed, settings.trainer
    records, classes = load_manifest(paths.prepared)
    labels, rows = _labels_and_rows(records, classes)
    digest = manifest_digest(paths.prepared / MANIFEST)
    images = image_array(
        [r.file for r in records],
        input_resize(tech, settings.backbone),  # squashed for the scratch convnet, as the base was trained otherwise
        paths.cache,
        digest,
        settings.data.workers,
        progress,
        settings.data.image_limits,
    )
    setup = techniques.builder(tech)(
        techniques.Inputs(
            technique=tech,
            backbone=settings.backbone,
            classes=classes,
            images=images,
            augmentation=augmentation(settings),
            channels_last=tcfg.channels_last,
            trainer=trainer,
            features_dir=paths.features,
            manifest_digest=digest,
            head_checkpoint=paths.head_checkpoint or paths.models / "feature_extract" / CHECKPOINT,
        )
    )
    module = classifier_module(settings, setup, len(classes))
    data = ArrayDataModule(
        SplitArrays(setup.array, labels, rows, classes),
        tech.batch_size,
        seed,
        eval_batch_size=tech.eval_batch_size,
        num_workers=tcfg.num_workers,
    )
    return Job(records, classes, digest, rows, setup, module, data)


def train_technique(
    settings: Settings, paths: Paths, logger=None, progress: bool = True, commit: str | None = None
) -> dict:
    """Train and test the technique `settings.technique`; return its metrics (rank 0 writes the outputs), with where
    they came from (`smallvision.provenance`; `commit`: the git commit of the code that ran)."""
    tech = settings.selected
    name, kind, seed = settings.technique, tech.kind, settings.seed
    started = time.time()
    L.seed_everything(seed, workers=True, verbose=False)
    # metrics.json means "this folder holds a finished run": drop an earlier run's before best.ckpt is overwritten,
    # so a run killed half-way (outside DVC, which removes its outs itself) never looks finished
    (paths.out / METRICS).unlink(missing_ok=True)

    checkpoint = ModelCheckpoint(
        dirpath=str(paths.out),
        filename=CHECKPOINT.removesuffix(".ckpt"),
        monitor="val_acc",
        mode="max",
        save_top_k=1,
        save_weights_only=True,
        enable_version_counter=False,
    )
    start = StartingPoint(checkpoint)
    callbacks = [checkpoint, start, *early_stopping(tech.early_stopping_patience)]
    trainer = make_trainer(settings.trainer, tech.epochs, paths.out, logger or False, callbacks)
    with expected_notices_hidden():
        job = prepare(settings, paths, trainer, progress)
        module, data, records, classes, rows = job.module, job.data, job.records, job.classes, job.rows
        if job.setup.trained_start:
            start.validate(trainer, module, data)  # epoch 0: the weights to beat
        fit_started = time.time()
        trainer.fit(module, datamodule=data)
        fit_time = time.time() - fit_started
        if not checkpoint.best_model_path:
            raise DataError("training produced no checkpoint (no validation epoch ran)")
        trainer.test(module, datamodule=data, ckpt_path=checkpoint.best_model_path, verbose=False)

    results = module.test_results
    best = best_row(module.history)
    low, high = wilson_interval(results["correct"], results["n"])
    metrics = {
        "technique": name,
        "kind": kind,
        "backbone": network_name(tech, settings.backbone),
        "test_accuracy": results["acc"],
        "test_loss": results["loss"],
        "test_images": results["n"],
        "test_correct": results["correct"],
        "ci95_low": low,
        "ci95_high": high,
        "best_epoch": int(best["epoch"]),
        "best_val_accuracy": best["val_acc"],
        "best_val_loss": best["val_loss"],  # the champion's tie-break (tracking.models.champion_run)
        **start.metrics(module.history),
        "epochs": tech.epochs,
        "image_size": tech.image_size,
        "seed": seed,
        "train_images": len(rows["train"]),
        "wall_time_s": round(time.time() - started, 1),
        **provenance.fields(settings, job.digest, commit),
        **_effort(module, job.setup, fit_time),
        **_tta_metrics(results),
    }
    if trainer.is_global_zero:
        if note := start.note(name, module.history):
            log.info("%s", note)
        write_outputs(paths.out, metrics, module.history, results["samples"], records, rows["test"], classes)
    return metrics


def _effort(module: ClassifierModule, setup: techniques.Setup, fit_time: float) -> dict:
    """Epochs trained (fewer than `epochs` when stopped early), seconds per epoch (training and validation) and the
    network's parameters (base + head, also when only the head trained on cached features) and trainable ones."""
    epochs_run = len(trained_rows(module.history))
    return {
        "epochs_run": epochs_run,
        "seconds_per_epoch": round(fit_time / max(1, epochs_run), 2),
        "parameters": setup.parameters,
        "trainable_parameters": sum(p.numel() for p in setup.net.parameters() if p.requires_grad),
    }


def _tta_metrics(results: dict) -> dict:
    """The test metrics with test-time augmentation (image and flip averaged), beside the plain ones."""
    if "tta" not in results:
        return {}
    tta = results["tta"]
    low, high = wilson_interval(tta["correct"], tta["n"])
    return {
        "test_accuracy_tta": tta["acc"],
        "test_loss_tta": tta["loss"],
        "test_correct_tta": tta["correct"],
        "ci95_low_tta": low,
        "ci95_high_tta": high,
    }

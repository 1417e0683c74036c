"""The learning-rate finder (Lightning's `Tuner.lr_find`, a range test): a technique trains for `num_training`
batches while the rate grows exponentially from `min_lr` to `max_lr`, the loss is recorded at each rate, and the
suggested rate is where the loss falls fastest. The network is restored afterwards; nothing of the run is kept but
models/<technique>/lr_find.{json,png}, which the report shows.

With layer-wise rates (`optimizer.layer_decay` < 1) the finder sweeps one rate for every group: what it suggests is
the head's rate.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.tuner import Tuner

from smallvision.schema import Settings
from smallvision.trainer import expected_notices_hidden, make_trainer
from smallvision.training import Paths, prepare
from smallvision.visualize.lr_finder import write_lr_find


def find_lr(settings: Settings, paths: Paths, progress: bool = True) -> dict:
    """Run the range test for settings.technique with settings.lr_find; write lr_find.{json,png} into `paths.out`."""
    tech, opts = settings.selected, settings.lr_find
    low, high, steps = opts.min_lr, opts.max_lr, opts.num_training
    L.seed_everything(settings.seed, workers=True, verbose=False)
    trainer = make_trainer(settings.trainer, steps, paths.out, False, [])  # epochs enough for `steps` batches
    paths.out.mkdir(parents=True, exist_ok=True)  # Lightning saves its restore point there
    with expected_notices_hidden():
        job = prepare(settings, paths, trainer, progress)
        finder = Tuner(trainer).lr_find(
            job.module, datamodule=job.data, min_lr=low, max_lr=high, num_training=steps, update_attr=False
        )
    result = {
        "technique": settings.technique,
        "optimizer": tech.optimizer.name,
        "configured_lr": tech.optimizer.lr,
        "suggestion": finder.suggestion(),
        "min_lr": low,
        "max_lr": high,
        "num_training": steps,
        "lr": [float(x) for x in finder.results["lr"]],
        "loss": [float(x) for x in finder.results["loss"]],
    }
    if trainer.is_global_zero:
        write_lr_find(paths.out, result, settings.visualize.dpi)
    return result

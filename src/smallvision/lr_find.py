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

from smallvision import settings
from smallvision.errors import ConfigError
from smallvision.trainer import expected_notices_hidden, make_trainer
from smallvision.training import Paths, prepare
from smallvision.visualize.lr_finder import write_lr_find


def find_lr(cfg: dict, paths: Paths, progress: bool = True) -> dict:
    """Run the range test for cfg["technique"] with cfg["lr_find"]; write lr_find.{json,png} into `paths.out`."""
    tech = settings.technique(cfg)
    opts = cfg["lr_find"]
    low, high, steps = opts["min_lr"], opts["max_lr"], opts["num_training"]  # bounds: checks.NUMBERS
    if low >= high:
        raise ConfigError(f"lr_find.min_lr={low:g} must be below lr_find.max_lr={high:g}")
    L.seed_everything(int(cfg["seed"]), workers=True, verbose=False)
    trainer = make_trainer(cfg["trainer"], steps, paths.out, False, [])  # epochs enough for `steps` batches
    paths.out.mkdir(parents=True, exist_ok=True)  # Lightning saves its restore point there
    with expected_notices_hidden():
        job = prepare(cfg, tech, paths, trainer, progress)
        finder = Tuner(trainer).lr_find(
            job.module, datamodule=job.data, min_lr=low, max_lr=high, num_training=steps, update_attr=False
        )
    result = {
        "technique": cfg["technique"],
        "optimizer": tech["optimizer"]["name"],
        "configured_lr": tech["optimizer"]["lr"],
        "suggestion": finder.suggestion(),
        "min_lr": low,
        "max_lr": high,
        "num_training": steps,
        "lr": [float(x) for x in finder.results["lr"]],
        "loss": [float(x) for x in finder.results["loss"]],
    }
    if trainer.is_global_zero:
        write_lr_find(paths.out, result, int(cfg["visualize"]["dpi"]))
    return result

"""A technique that starts from trained weights (fine-tune: feature-extract's head on the pretrained base) never
hands back a model worse on validation than the one it started from.

Before any update the starting network is validated as epoch 0, by the module's own validation (exact under DDP:
`smallvision.shards`), and becomes the checkpoint to beat: a trained epoch replaces it only when its validation
accuracy is strictly higher (Keras' `ModelCheckpoint(initial_value_threshold=...)`; a tie keeps the start). When
none does, the stage tests the starting weights and metrics.json says so (`best_epoch` 0, `kept_start`).

Techniques that start from random weights (from scratch, the head on cached features) have no epoch 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.seed import isolate_rng

START_EPOCH = 0  # the history row of the starting weights, validated before training


def best_row(history: Sequence[dict]) -> dict:
    """The history row with the highest validation accuracy; of equal ones the earliest, as the checkpoint keeps."""
    return history[int(np.argmax([row["val_acc"] for row in history]))]


def trained_rows(history: Sequence[dict]) -> list[dict]:
    """The rows of the epochs that trained (all but the start's)."""
    return [row for row in history if row["epoch"] != START_EPOCH]


class StartingPoint(L.Callback):
    """The starting weights as the first candidate of `checkpoint` (the stage's best-validation checkpoint).

    `validate` runs epoch 0 before `fit`; at fit start (after the checkpoint callback has resolved its folder)
    the starting weights are saved as the checkpoint, with their validation accuracy as the score to beat."""

    def __init__(self, checkpoint: ModelCheckpoint) -> None:
        self.checkpoint = checkpoint
        self.val_acc: float | None = None  # the start's validation accuracy; None: no start to keep

    def validate(self, trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule) -> None:
        """Validate the starting weights (the module appends them to its history as epoch 0). The global random
        state is restored afterwards: creating the validation loader draws from it, and training must see the same
        draws as without this evaluation (same seed, same run). Evaluation draws nothing on the GPU, and reading
        every GPU's random state would open a CUDA context on each from every DDP process: CUDA's is left alone."""
        with isolate_rng(include_cuda=False):
            trainer.validate(module, datamodule=datamodule, verbose=False)
        self.val_acc = float(module.history[-1]["val_acc"])

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.val_acc is None:
            return
        path = self.checkpoint.format_checkpoint_name({})
        trainer.save_checkpoint(path, weights_only=self.checkpoint.save_weights_only)
        # ModelCheckpoint has no initial_value_threshold: its public state, as a resumed run restores it, makes the
        # start the best so far; a later epoch then replaces it only when strictly better (torch.gt, mode max)
        score = torch.tensor(self.val_acc)
        self.checkpoint.load_state_dict(
            {
                **self.checkpoint.state_dict(),
                "best_model_path": path,
                "best_model_score": score,
                "best_k_models": {path: score},
                "kth_best_model_path": path,
                "kth_value": score,
            }
        )

    def metrics(self, history: Sequence[dict]) -> dict:
        """`start_val_accuracy` and `kept_start` (no trained epoch beat the start) for metrics.json; nothing for a
        technique that started from random weights."""
        if self.val_acc is None:
            return {}
        return {"start_val_accuracy": self.val_acc, "kept_start": best_row(history)["epoch"] == START_EPOCH}

    def note(self, technique: str, history: Sequence[dict]) -> str | None:
        """The line the stage prints when it keeps the starting weights, else None."""
        trained = trained_rows(history)
        if self.val_acc is None or not self.metrics(history)["kept_start"] or not trained:
            return None
        best = best_row(trained)
        return (
            f"{technique}: training did not improve validation accuracy ({100 * self.val_acc:.1f} % at the start, "
            f"best {100 * best['val_acc']:.1f} % in epoch {best['epoch']}): keeping the starting weights"
        )

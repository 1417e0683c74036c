"""One LightningModule for every technique: a network, its input pipeline on the training device, exact metrics.

- Inputs are uint8 NHWC images (decoded once) or cached feature vectors. Images are turned into float,
  augmented as a whole batch (train only) and normalised on the device that trains, in channels_last layout.
- Two classes: one logit + sigmoid (binary cross-entropy), as the book. C > 2 classes: C logits + softmax.
- Label smoothing (`label_smoothing` e > 0) changes only the loss training minimises (targets e/2 and 1 - e/2 for
  one logit, as Keras' BinaryCrossentropy(label_smoothing=e); PyTorch's for C logits); the losses reported in
  the history and metrics stay the plain cross-entropy, comparable between techniques.
- Validation and test results are gathered per sample by index from every rank, so each image is counted
  exactly once under DDP; per-epoch train/val loss and accuracy go to `history`.
- A loss that becomes NaN or infinite stops training at the end of that epoch with DivergedError (the same on
  every rank: the sums are gathered first), before any checkpoint of that epoch is saved.
- Mixing (`mixup_alpha`, `cutmix_alpha` > 0): each training batch is mixed with itself rolled by one
  (torchvision's MixUp / CutMix; both: one of the two per batch) against soft targets; the history's training
  loss and accuracy are then against those targets (the accuracy: the class with the larger share).
- Weight averaging (`ema_decay`): an exponential moving average of the weights, updated after every training step
  (torch's AveragedModel, buffers included), is what validation scores and what checkpoints hold as `net.*`, so
  the checkpoint chosen on validation, the test and every later stage use the averaged weights.
- Test-time augmentation (`tta`): the test split is also scored on the mean of the class probabilities of each
  image and its horizontal flip, reported beside the plain result, never instead of it. Cached features come
  with the features of the flipped image as a second view ((N, 2, D) rows; see `smallvision.features`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn

from smallvision.data.augmentation import AffineConfig, random_affine
from smallvision.data.preprocess import normalise, to_pixels
from smallvision.errors import DivergedError
from smallvision.modules.optim import lr_scheduler, make_optimizer, param_groups
from smallvision.networks import class_probabilities
from smallvision.schema_techniques import LrSchedule, Optimizer
from smallvision.shards import gather_shards


@dataclass(frozen=True)
class ImageInput:
    """How uint8 images become network input: optional batched augmentation, then (x/255 - mean) / std."""

    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    augmentation: AffineConfig | None = None
    channels_last: bool = False


class ClassifierModule(L.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optimizer: Optimizer,
        image_input: ImageInput | None,
        frozen: list[nn.Module] = (),
        seed: int = 0,
        spec: dict | None = None,
        schedule: LrSchedule | None = None,
        tta: bool = False,
        label_smoothing: float = 0.0,
        feature_flips: bool = False,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        ema_decay: float | None = None,
    ) -> None:
        super().__init__()
        # `spec` (plain types) says how to rebuild `net`; it is what checkpoints carry besides weights
        hyper = {"spec": spec or {}, "optimizer": optimizer.model_dump(), "num_classes": num_classes}
        self.save_hyperparameters(hyper)
        self.net = net
        self.num_classes = num_classes
        self.optimizer_cfg = optimizer
        self.schedule = schedule  # None: one constant rate
        self.tta = tta
        self.label_smoothing = label_smoothing
        self.feature_flips = feature_flips  # cached features of (image, flip): train on either, at random
        self.image_input = image_input
        self.mixing = batch_mixing(mixup_alpha, cutmix_alpha, num_classes)
        self.ema_decay = ema_decay
        self._ema: tuple = ()  # (AveragedModel of net,) while fitting; a tuple so it is no submodule of this one
        self.frozen = list(frozen)
        self.seed = seed
        self.history: list[dict] = []
        self.test_results: dict | None = None
        self._train_sums = torch.zeros(3)  # loss sum, correct, count
        self._eval_outputs: list[dict[str, torch.Tensor]] = []
        self._aug_generator: torch.Generator | None = None
        if image_input is not None and image_input.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    # -- frozen parts stay in eval mode: weights and BatchNorm statistics never change
    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    # -- input pipeline, on the training device
    def _generator(self) -> torch.Generator:
        if self._aug_generator is None or self._aug_generator.device != self.device:
            # per-rank seed: different augmentations on each rank, reproducible overall
            self._aug_generator = torch.Generator(device=self.device)
            self._aug_generator.manual_seed(self.seed * 1000 + self.global_rank)
        return self._aug_generator

    def prepare_images(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W); augmented when training."""
        spec = self.image_input
        x = to_pixels(x)
        if train and spec.augmentation is not None and not spec.augmentation.is_identity:
            x = random_affine(x, spec.augmentation, generator=self._generator())
        x = normalise(x, spec.mean, spec.std)
        if spec.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y, idx = batch
        if self.image_input is not None:
            x = self.prepare_images(x, train=self.trainer.training)
        else:
            x = x.float()
            if x.ndim == 3:  # cached features of (image, its horizontal flip)
                if self.trainer.training and self.feature_flips:
                    pick = torch.randint(0, 2, (len(x),), device=x.device, generator=self._generator())
                    x = x[torch.arange(len(x), device=x.device), pick]
                elif not (self.tta and self.trainer.testing):
                    x = x[:, 0]
        return x, y, idx

    # -- loss and predictions
    def _losses(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample loss against class indices or (N, C) class shares, the predicted class, and the probability
        the network gives its predicted class."""
        prob, pred = class_probabilities(logits).max(1)  # one logit: class 1 where sigmoid > 0.5
        return cross_entropies(logits, target), pred, prob

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y, _ = batch
        target = y
        if self.mixing is not None:
            x, target = self.mixing(x, y)  # (N, C) class shares
        logits = self(x)
        loss, pred, _ = self._losses(logits, target)
        hits = pred == (y if target is y else target.argmax(1))
        # kept on the training device, so a GPU step waits for no copy to the host (read once per epoch); not in
        # place: after a validation before fit (inference mode) the sums are an inference tensor
        step_sums = torch.stack([loss.detach().sum(), hits.sum().float(), loss.new_tensor(float(len(y)))])
        self._train_sums = self._train_sums.to(step_sums.device) + step_sums
        objective = (
            cross_entropies(logits, target, self.label_smoothing).mean() if self.label_smoothing else loss.mean()
        )
        self.log("train_loss_step", objective, prog_bar=True, logger=False)
        return objective

    # -- the average of the weights (ema_decay)
    def on_fit_start(self) -> None:
        if self.ema_decay is not None:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            multi_avg_fn = get_ema_multi_avg_fn(self.ema_decay)
            averaged = AveragedModel(self.net, multi_avg_fn=multi_avg_fn, use_buffers=True)
            # it only scores, and no .train()/.eval() of this module reaches it: always in eval mode (dropout off,
            # BatchNorm's averaged running statistics)
            self._ema = (averaged.eval().requires_grad_(False),)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self._ema:
            self._ema[0].update_parameters(self.net)

    def on_fit_end(self) -> None:
        self._ema = ()  # the net keeps its trained weights; best.ckpt holds the averaged ones

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self._ema:
            averaged = self._ema[0].module.state_dict()
            checkpoint["state_dict"] |= {f"net.{k}": v for k, v in averaged.items()}

    def _scored(self, x: torch.Tensor) -> torch.Tensor:
        """The logits validation and test score: of the averaged weights while fitting (a test loads them)."""
        return self._ema[0].module(x) if self._ema else self(x)

    def _eval_step(self, batch) -> None:
        x, y, idx = batch
        loss, pred, prob = self._losses(self._scored(x), y)
        self._eval_outputs.append({"idx": idx, "y": y, "pred": pred, "prob": prob, "loss": loss})

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch, batch_idx: int) -> None:
        if not self.tta:
            self._eval_step(batch)
            return
        x, y, idx = batch
        plain, flipped = (x[:, 0], x[:, 1]) if x.ndim == 3 else (x, x.flip(3))  # cached features, or images
        logits = self(plain)
        loss, pred, prob = self._losses(logits, y)
        tta_loss, tta_pred, tta_prob = tta_losses(class_probabilities(logits), class_probabilities(self(flipped)), y)
        self._eval_outputs.append(
            {"idx": idx, "y": y, "pred": pred, "prob": prob, "loss": loss}
            | {"pred_tta": tta_pred, "prob_tta": tta_prob, "loss_tta": tta_loss}
        )

    def _gather_eval(self) -> dict[str, torch.Tensor]:
        """Per-sample results of every rank, each sample once, in split order."""
        keys = list(self._eval_outputs[0]) if self._eval_outputs else ["idx", "y", "pred", "prob", "loss"]
        if self.tta and self.trainer.testing:  # a rank without test images still sends every key to the gather
            keys = list(dict.fromkeys([*keys, "pred_tta", "prob_tta", "loss_tta"]))
        local = (
            {k: torch.cat([o[k] for o in self._eval_outputs]) for k in keys}
            if self._eval_outputs
            else {k: torch.zeros(0, device=self.device) for k in keys}
        )
        self._eval_outputs = []
        return {k: v.cpu() for k, v in gather_shards(self, local).items()}

    def _summary(self, r: dict[str, torch.Tensor]) -> dict[str, float]:
        n = len(r["y"])
        correct = int((r["pred"] == r["y"]).sum())
        return {
            "loss": float(r["loss"].double().mean()) if n else float("nan"),
            "acc": correct / n if n else float("nan"),
            "correct": correct,
            "n": n,
        }

    def on_validation_epoch_end(self) -> None:
        val = self._summary(self._gather_eval())
        if self.trainer.sanity_checking:
            return
        sums = self._train_sums.to(self.device)
        if self.trainer.world_size > 1:
            sums = self.all_gather(sums).sum(0)
        self._train_sums = torch.zeros(3)
        train_loss, train_acc = (
            (float(sums[0] / sums[2]), float(sums[1] / sums[2])) if sums[2] > 0 else (float("nan"),) * 2
        )
        row = {
            "epoch": self.current_epoch + int(self.trainer.state.fn == TrainerFn.FITTING),  # before fit: 0
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": val["loss"],
            "val_acc": val["acc"],
        }
        self._stop_if_diverged(row, trained=bool(sums[2] > 0), validated=val["n"] > 0)
        self.history.append(row)
        # identical on every rank after the gather, so no sync is needed; NaN (no training before fit) is not logged.
        # `epoch` is history.csv's number (0: the start), which the MLflow logger takes as the step
        self.log_dict(
            {k: v for k, v in row.items() if k != "epoch" and math.isfinite(v)}, prog_bar=True, sync_dist=False
        )
        self.log("epoch", float(row["epoch"]), sync_dist=False)

    def _stop_if_diverged(self, row: dict, trained: bool, validated: bool) -> None:
        losses = {
            "training": row["train_loss"] if trained else 0.0,
            "validation": row["val_loss"] if validated else 0.0,
        }
        bad = [f"{name} loss is {value}" for name, value in losses.items() if not math.isfinite(value)]
        if bad:
            raise DivergedError(
                f"training diverged in epoch {row['epoch']}: the {' and the '.join(bad)}; stopped, and no "
                f"metrics.json was written. Lower the learning rate (optimizer.lr={self.optimizer_cfg.lr:g})"
            )

    def on_test_epoch_end(self) -> None:
        results = self._gather_eval()
        self.test_results = {**self._summary(results), "samples": results}
        if self.tta:
            tta = {k.removesuffix("_tta"): v for k, v in results.items() if k.endswith("_tta")}
            self.test_results["tta"] = self._summary({**tta, "y": results["y"]})

    def configure_optimizers(self):
        optimizer = make_optimizer(param_groups(self.net, self.optimizer_cfg), self.optimizer_cfg)
        scheduler = lr_scheduler(
            optimizer, self.schedule, self.trainer.estimated_stepping_batches, self.trainer.max_epochs
        )
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}


def batch_mixing(mixup_alpha: float, cutmix_alpha: float, num_classes: int):
    """torchvision's batched MixUp and/or CutMix ((images, labels) -> (mixed images, (N, C) class shares)), one of
    the two per batch when both are on; None when both alphas are 0."""
    if not (mixup_alpha or cutmix_alpha):
        return None
    from torchvision.transforms import v2

    mixers = [v2.MixUp(alpha=mixup_alpha, num_classes=num_classes)] if mixup_alpha else []
    mixers += [v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes)] if cutmix_alpha else []
    return mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)


def cross_entropies(logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Per-sample cross-entropy against class indices (N,) or class shares (N, C), with label smoothing e: targets
    e/2 and 1 - e/2 for one logit (Keras' BinaryCrossentropy(label_smoothing=e)), PyTorch's for C logits."""
    logits = logits.float()
    if logits.shape[1] == 1:  # two classes, one logit: the target is the share of class 1
        t = target.float() if target.ndim == 1 else target[:, 1]
        return F.binary_cross_entropy_with_logits(
            logits.squeeze(1), t * (1 - smoothing) + smoothing / 2, reduction="none"
        )
    return F.cross_entropy(logits, target, label_smoothing=smoothing, reduction="none")


def tta_losses(
    probs: torch.Tensor, probs_flipped: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample loss, predicted class and its probability from the mean of the two passes' class probabilities."""
    mean = (probs + probs_flipped) / 2
    prob, pred = mean.max(1)
    loss = F.nll_loss(mean.clamp_min(1e-12).log(), y, reduction="none")  # cross-entropy of the averaged prediction
    return loss, pred, prob

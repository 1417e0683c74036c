"""The Lightning Trainer a technique trains with, from the `trainer` config group."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import EarlyStopping

from smallvision.errors import ConfigError
from smallvision.schema import Trainer

# Lightning notices about choices made on purpose here: frozen modules are kept in eval mode, the input
# pipeline lives in the module's on_after_batch_transfer, feature extraction collects its own outputs, and
# epoch metrics are gathered by the module itself (identical on every rank, so logging needs no sync_dist).
_EXPECTED_NOTICES = (
    r"Found \d+ module\(s\) in eval mode",
    r"You have overridden `on_after_batch_transfer`",
    r"predict returned None",
    r".*does not have many workers",
    r"It is recommended to use `self\.log\(",
)


@contextmanager
def expected_notices_hidden() -> Iterator[None]:
    """Hide Lightning's notices about the choices above while training, and only then."""
    with warnings.catch_warnings():
        for notice in _EXPECTED_NOTICES:
            warnings.filterwarnings("ignore", message=notice)
        yield


def resolve_precision(precision: str, accelerator: str, cpu_native_bf16: bool | None = None) -> str:
    """`auto`: bf16 autocast where the hardware runs it natively, else fp32.

    On a CPU without AVX512-BF16/AMX, bf16 autocast is emulated and measured ~7x slower than fp32 (benchmarks/).
    `cpu_native_bf16` replaces the CPU's own answer (benchmarks reproduce a CPU without native bf16 with it).
    """
    if precision != "auto":
        return precision
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"
    if cpu_native_bf16 is None:  # torch has no public API for this
        cpu_native_bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return "bf16-mixed" if cpu_native_bf16 else "32-true"


def make_trainer(trainer_cfg: Trainer, epochs: int, out: Path, logger, callbacks) -> L.Trainer:
    """The Trainer; settings Lightning refuses (an unknown accelerator, strategy or precision, a GPU that is not
    there) are a ConfigError naming them, before any image is decoded."""
    try:
        return _trainer(trainer_cfg, epochs, out, logger, callbacks)
    except (ValueError, TypeError, MisconfigurationException) as err:
        settings = ", ".join(
            f"trainer.{k}={getattr(trainer_cfg, k)!r}" for k in ("accelerator", "devices", "strategy", "precision")
        )
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"Lightning cannot train with {settings}: {first}") from None


def _trainer(trainer_cfg: Trainer, epochs: int, out: Path, logger, callbacks) -> L.Trainer:
    return L.Trainer(
        accelerator=trainer_cfg.accelerator,
        devices=trainer_cfg.devices,
        num_nodes=trainer_cfg.num_nodes,
        strategy=trainer_cfg.strategy,
        precision=resolve_precision(str(trainer_cfg.precision), trainer_cfg.accelerator),
        max_epochs=epochs,
        logger=logger,
        callbacks=callbacks,
        default_root_dir=str(out),
        enable_progress_bar=trainer_cfg.progress,
        deterministic=trainer_cfg.deterministic,
        log_every_n_steps=trainer_cfg.log_every_n_steps,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # our samplers keep evaluation exact (see smallvision/shards.py)
        enable_model_summary=False,
    )


def early_stopping(patience: int | None) -> list[EarlyStopping]:
    """Stop once the validation loss has not improved for `patience` epochs (a technique's
    early_stopping_patience); none when it is null, so every epoch runs (the book)."""
    if patience is None:
        return []
    return [EarlyStopping(monitor="val_loss", mode="min", patience=patience, check_finite=True)]

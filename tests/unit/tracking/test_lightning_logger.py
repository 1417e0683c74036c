"""Lightning's MLflow logger pointed into a technique's child run."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import pytest
import torch
from helpers.tracking import make_tracker, runs_of, tracking_warnings
from mlflow import MlflowClient

from smallvision.tracking import (
    lightning_logger,
)


class TinyModule:
    """Built lazily so importing this test file does not import lightning."""

    @staticmethod
    def make(stop_after_epoch: int | None = None):
        import lightning.pytorch as pl

        class Tiny(pl.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.layer = torch.nn.Linear(2, 1)

            def training_step(self, batch, batch_idx):
                x, y = batch
                loss = torch.nn.functional.mse_loss(self.layer(x), y)
                self.log("train_loss", loss, on_step=False, on_epoch=True)
                return loss

            def on_train_epoch_end(self) -> None:
                if stop_after_epoch is not None and self.current_epoch == stop_after_epoch:
                    raise KeyboardInterrupt  # Ctrl-C

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        return Tiny()


def fit(module, logger, root: Path) -> None:
    import lightning.pytorch as pl

    data = torch.utils.data.TensorDataset(torch.randn(8, 2), torch.randn(8, 1))
    trainer = pl.Trainer(
        max_epochs=2,
        logger=logger,
        accelerator="cpu",
        default_root_dir=root,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=4))


def test_plain_lightning_logger_logs_into_child_and_our_status_wins(
    store_uri: str, experiment: str, tmp_path: Path
) -> None:
    from lightning.pytorch.loggers import MLFlowLogger

    tracker = make_tracker(store_uri, experiment)
    client = MlflowClient(store_uri)
    with tracker.technique_run("baseline", {}, {}) as run_id:
        fit(TinyModule.make(), MLFlowLogger(tracking_uri=store_uri, run_id=run_id), tmp_path)
        # the plain logger's finalize() ends the run after fit; technique_run sets it again on exit
        assert client.get_run(run_id).info.status == "FINISHED"
    assert len(client.get_metric_history(run_id, "train_loss")) == 2
    assert len(runs_of(store_uri, experiment)) == 2  # the parent and this child: the logger made no run of its own

    previous = signal.getsignal(signal.SIGINT)  # Lightning ignores SIGINT after a Ctrl-C; give it back to pytest
    try:
        # Lightning turns KeyboardInterrupt into sys.exit(1)
        with pytest.raises(SystemExit), tracker.technique_run("augment", {}, {}) as killed_id:
            fit(TinyModule.make(stop_after_epoch=0), MLFlowLogger(tracking_uri=store_uri, run_id=killed_id), tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert client.get_run(killed_id).info.status == "KILLED"  # not the logger's FAILED


def test_child_run_logger_leaves_status_and_survives_store_errors(
    store_uri: str, experiment: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = make_tracker(store_uri, experiment)
    client = MlflowClient(store_uri)
    with tracker.technique_run("baseline", {}, {}) as run_id:
        logger = lightning_logger(tracker, run_id)
        fit(TinyModule.make(), logger, tmp_path)
        assert client.get_run(run_id).info.status == "RUNNING"  # test() may still follow
        assert len(client.get_metric_history(run_id, "train_loss")) == 2
        logger.log_hyperparams({"lr": 0.1})  # the config is the run's params; module hparams are not logged again
        assert "lr" not in client.get_run(run_id).data.params
        assert len(runs_of(store_uri, experiment)) == 2

        def unreachable(*args, **kwargs):
            raise ConnectionError("server went away")

        monkeypatch.setattr(logger.experiment, "log_batch", unreachable)
        with caplog.at_level(logging.WARNING):
            fit(TinyModule.make(), logger, tmp_path)  # still trains to the end
    (warning,) = tracking_warnings(caplog)
    assert "ConnectionError: server went away" in warning.getMessage()

"""A Lightning logger that writes per-epoch metrics into a study's child run, under the tracker's guard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smallvision.tracking.tracker import StudyTracker


def lightning_logger(tracker: StudyTracker, run_id: str | None, **kwargs: Any) -> Any:
    """A Lightning `MLFlowLogger` that logs per-epoch metrics into the child run `run_id`, or None
    when there is no run (pass `logger=... or False` to the Trainer, since None means Lightning's default logger).

    Unlike the plain logger it logs each epoch's metrics at the epoch as the step (as the log-later path does),
    leaves the run's status to `technique_run` (the plain one marks the run FINISHED after `fit`, before `test`
    has run), does not log the module's hparams (the config is already the run's params), and routes store errors
    to the tracker's single warning instead of crashing the training loop. `kwargs` go to MLFlowLogger (e.g. prefix).
    """
    if run_id is None or not tracker.enabled:
        return None
    return _child_run_logger_class()(tracker, tracking_uri=tracker.tracking_uri, run_id=run_id, **kwargs)


def _child_run_logger_class() -> type:
    # lightning is imported here, not at module level: the log-later path does not need it
    from lightning.pytorch.loggers import MLFlowLogger

    class ChildRunLogger(MLFlowLogger):
        def __init__(self, tracker: StudyTracker, **kwargs: Any):
            super().__init__(**kwargs)
            self._tracker = tracker

        def log_hyperparams(self, params: Any) -> None:
            """Skipped: technique_run already logged the resolved config, and a module hparam whose
            value differs from a logged param would make MLflow reject the batch."""

        def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
            """Logged at the epoch as the step, as history.csv numbers it (0: the starting weights, validated before
            training; then 1, 2, ...): the module logs that number as `epoch`, which Lightning keeps in place of its
            own 0-based one. The log-later path gives history.csv's rows the same steps."""
            if "epoch" in metrics:
                step = int(metrics["epoch"])
                metrics = {key: value for key, value in metrics.items() if key != "epoch"}
            self._tracker.guarded(lambda: MLFlowLogger.log_metrics(self, metrics, step))

        def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
            self._tracker.guarded(lambda: MLFlowLogger.after_save_checkpoint(self, checkpoint_callback))

        def finalize(self, status: str = "success") -> None:
            """No set_terminated here: technique_run sets the final status."""

    return ChildRunLogger

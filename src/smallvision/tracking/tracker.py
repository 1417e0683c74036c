"""MLflow tracking for the study that never stops training: one study (parent) run, one child run per technique
training job, the comparison on the parent, the report's figures on the children.

When the store cannot be written (locked, read-only or corrupt SQLite file, unwritable folder, unreachable server)
the tracker logs one warning that gives the root cause, where the metrics are and how to log them later, then
turns itself into a no-op. MLflow's own report of that failure (a database error with its full traceback) is
held back: the warning says it in one line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mlflow.entities import Metric, RunStatus
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT
from mlflow.utils.validation import MAX_METRICS_PER_BATCH

from smallvision.errors import DataError
from smallvision.interrupts import ctrl_c_held_back
from smallvision.provenance import git_commit
from smallvision.runs import METRICS, comparison_metrics
from smallvision.tracking.store import (
    DVC_EXPERIMENT_TAG,
    batches,
    dashboard_url,
    default_artifact_location,
    dvc_experiment,
    reason,
    redact,
    resolve_tracking_uri,
    store_problem,
    ui_command,
)
from smallvision.tracking.study_runs import StudyRuns

if TYPE_CHECKING:
    from smallvision.schema import Settings

log = logging.getLogger(__name__)

# MLflow loggers that log every database error with its full traceback and then raise it to us
_NOISY_ON_FAILURE = ("mlflow.store.db.utils",)

T = TypeVar("T")

COMPARISON_FILE = "comparison.json"


class StudyTracker:
    """MLflow runs for one study: a parent found by `study_key`, one child per `technique_run`.

    When `enabled` is False (tracking switched off, or not rank zero: the caller decides) or the
    store fails, every method is a no-op and `technique_run` yields None.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        study_key: str,
        study_name: str,
        tags: dict[str, str] | None = None,
        enabled: bool = True,
        artifact_location: str | None = None,
        models_dir: str = "models",
        log_later_command: str = "python pipelines/log_metrics.py technique={technique}",
    ):
        """`tags` go on the parent and every child. `artifact_location` is for a newly created
        experiment; by default a SQLite store keeps artifacts in `mlartifacts/` beside the database
        (MLflow's own default is relative to the working directory). `models_dir` and `log_later_command`
        go into the failure warning."""
        self.runs = StudyRuns(
            tracking_uri,
            experiment_name,
            study_key,
            study_name,
            tags or {},
            artifact_location or default_artifact_location(tracking_uri),
        )
        self.tracking_uri = tracking_uri
        self.tags = self.runs.tags
        self.enabled = enabled
        self.models_dir = models_dir
        self.log_later_command = log_later_command
        self._technique: str | None = None  # the one being trained, for the failure warning
        # a store that cannot be one (a FIFO, garbage) is never handed to MLflow, which would retry a FIFO for
        # minutes: tracking is off at once, and the one warning comes with the first action (naming its technique)
        problem = store_problem(tracking_uri) if enabled else None
        self._bad_store = DataError(problem) if problem else None
        self.enabled = enabled and not problem

    @property
    def client(self):
        return self.runs.client

    @property
    def study_key(self) -> str:
        return self.runs.study_key

    @property
    def commit(self) -> str | None:
        """The git commit of the code that runs (study_tracker asks git once: the job's metrics reuse it)."""
        return self.tags.get(MLFLOW_GIT_COMMIT)

    @property
    def parent_run_id(self) -> str | None:
        """The study run's id once it was found or created (None while disabled)."""
        return self.runs.parent_run_id

    def dashboard_hint(self, ui_url: str) -> str | None:
        """One line that says where to see the study's runs (None when tracking is off or failed)."""
        experiment_id = self.runs.experiment_id
        if not self.enabled or experiment_id is None:
            return None
        url = dashboard_url(self.tracking_uri, experiment_id, ui_url)
        serve = ui_command(self.tracking_uri, ui_url)
        return f"MLflow: {url}" + (f"  (serve it first: {serve})" if serve else "")

    # -- failure handling ------------------------------------------------------------------

    def guarded(self, action: Callable[[], T]) -> T | None:
        """Run one tracking action; on any store error warn once, switch tracking off, return None. A Ctrl-C during
        the action takes effect when it ends (`ctrl_c_held_back`: no store write is cut off half-way)."""
        if self._bad_store is not None:
            err, self._bad_store = self._bad_store, None
            self._disable(err)
        if not self.enabled:
            return None
        try:
            with ctrl_c_held_back(), _failure_reports_held_back():
                return action()
        except Exception as err:  # noqa: BLE001 -- any store/transport failure: tracking must never stop training
            self._disable(err)
            return None

    def _disable(self, err: BaseException) -> None:
        self.enabled = False
        technique = self._technique or "<technique>"
        log.warning(
            "MLflow tracking at %s failed: %s; training continues, metrics are in %s/%s/%s; log them later with: %s",
            redact(self.tracking_uri),
            reason(err),
            self.models_dir,
            technique,
            METRICS,
            self.log_later_command.format(technique=technique),
        )
        log.debug("MLflow failure details", exc_info=err)

    # -- runs ------------------------------------------------------------------------------

    @contextmanager
    def technique_run(self, technique: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> Iterator[str | None]:
        """A child run of the study for one training job; yields its run_id (None when tracking is off or broken).

        Final status (set after any Lightning logger's own, so this one wins): FINISHED on normal exit, FAILED on
        an exception, KILLED on KeyboardInterrupt or SystemExit (Lightning turns Ctrl-C into sys.exit(1) and
        SIGTERM into a SystemExit); the exception is re-raised.
        """
        self._technique = technique
        run_id = self.guarded(lambda: self.runs.start_child(technique, params, tags))
        try:
            yield run_id
        except Exception:
            self._end(run_id, RunStatus.FAILED)
            raise
        except BaseException:
            self._end(run_id, RunStatus.KILLED)
            raise
        self._end(run_id, RunStatus.FINISHED)

    def _end(self, run_id: str | None, status: int) -> None:
        if run_id is not None:
            self.guarded(lambda: self.runs.end(run_id, RunStatus.to_string(status)))

    # -- logging ---------------------------------------------------------------------------

    def log_metrics(self, run_id: str | None, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Numeric metrics at one step (0 when None) on a run."""
        if run_id is None:
            return
        timestamp = int(time.time() * 1000)
        entries = [Metric(key, float(value), timestamp, step or 0) for key, value in metrics.items()]

        def log_all() -> None:
            for batch in batches(entries, MAX_METRICS_PER_BATCH):
                self.client.log_batch(run_id, metrics=batch)

        self.guarded(log_all)

    def log_artifacts(self, run_id: str | None, paths: Iterable[Path], artifact_path: str | None = None) -> None:
        """Files and folders as artifacts of a run; a missing path is reported and skipped."""
        if run_id is None:
            return
        present = []
        for path in map(Path, paths):
            if path.exists():
                present.append(path)
            else:
                log.warning("not logging %s to MLflow: it does not exist", path)

        def log_all() -> None:
            for path in present:
                if path.is_dir():
                    self.client.log_artifacts(run_id, str(path), artifact_path)
                else:
                    self.client.log_artifact(run_id, str(path), artifact_path)

        self.guarded(log_all)

    def log_comparison(self, rows: list[dict[str, Any]], artifacts: Iterable[Path] = ()) -> None:
        """The comparison on the study run: `comparison.json` (pandas "split" layout, readable by
        `mlflow.load_table`), a metric "<technique>.<key>" per numeric value (`runs.comparison_metrics`: the numbers
        the visualize stage writes as DVC metrics; with the paired tests, e.g. "augment.step_p_value"), and
        `artifacts` (e.g. comparison.md/png). Rewritten, not appended, when the study is visualised again."""
        parent = self.guarded(self.runs.parent)
        if parent is None:
            return
        columns = list(dict.fromkeys(key for row in rows for key in row))
        table = {"columns": columns, "data": [[row.get(column) for column in columns] for row in rows]}
        self.guarded(lambda: self.client.log_dict(parent, table, COMPARISON_FILE))
        metrics = {
            f"{technique}.{key}": value
            for technique, values in comparison_metrics(rows).items()
            for key, value in values.items()
        }
        self.log_metrics(parent, metrics)
        self.log_artifacts(parent, artifacts)

    def log_report(
        self,
        rows: list[dict],
        study_files: list[Path],
        per_technique: Mapping[str, list[Path]],
        wall_time_s: float,
        reports: Path,
        audit: Mapping[str, float] | None = None,
    ) -> None:
        """The visualize stage's output: the comparison and study-level files on the study run, with the data
        audit's counts (`audit`, "audit.<key>", where it has run), each technique's figures on its newest child
        run. Never raises: MLflow holds a copy of what reports/ already holds."""
        try:
            if not self.enabled:
                return
            self.log_comparison(rows, [p for p in study_files if p.name != COMPARISON_FILE])
            parent = self.parent_run_id
            if parent is None or not self.enabled:
                return
            self.log_metrics(parent, {"visualize_wall_time_s": wall_time_s, **(audit or {})})
            for technique, paths in per_technique.items():
                child = self.runs.find_child(technique)
                if child is None:
                    log.warning(
                        "MLflow: no run of %s under the study run %s; its figures are only in %s",
                        technique,
                        parent,
                        reports,
                    )
                    continue
                self.log_artifacts(child, paths, "figures")
        except Exception as err:  # noqa: BLE001 -- tracking must never fail the stage
            log.warning(
                "MLflow logging of the figures failed (%s: %s); they are all in %s",
                type(err).__name__,
                str(err).splitlines()[0] if str(err) else "",
                reports,
            )


class _BelowError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


@contextmanager
def _failure_reports_held_back() -> Iterator[None]:
    """While a guarded action runs, drop MLflow's own error records (each is followed by the exception that the
    tracker's one warning reports); its other messages pass."""
    held_back = _BelowError()
    loggers = [logging.getLogger(name) for name in _NOISY_ON_FAILURE]
    for logger in loggers:
        logger.addFilter(held_back)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(held_back)


def study_tracker(
    cfg: Settings, root: Path, manifest_digest: str, sweep_dir: str | None = None, enabled: bool = True
) -> StudyTracker:
    """The tracker of the study `cfg` runs in: its parent run is found by the study name, the dataset, the seed and
    the manifest (what makes one study: `provenance.identity`; so the training stages, visualize and a later
    `pipelines/log_metrics.py` share one parent), or by the sweep folder for a Hydra sweep's jobs."""
    preset, dataset, seed = cfg.preset, cfg.data.name, cfg.seed
    key = f"sweep:{sweep_dir}" if sweep_dir else f"{preset}/{dataset}/seed {seed}/{manifest_digest[:12]}"
    name = f"sweep {Path(sweep_dir).name}" if sweep_dir else f"study {preset} ({dataset}, seed {seed})"
    tags = {"dataset": dataset}
    if commit := git_commit(root):
        tags[MLFLOW_GIT_COMMIT] = commit  # MLflow's own tag: the UI shows it as the run's source version
    if experiment := dvc_experiment():
        # each DVC experiment (`dvc exp run`, queued or not) is its own study run, named and tagged after it
        key, name = f"{key}/dvc {experiment}", f"{name} [{experiment}]"
        tags[DVC_EXPERIMENT_TAG] = experiment
    return StudyTracker(
        resolve_tracking_uri(cfg.logger.tracking_uri, root),
        cfg.logger.experiment_name,
        key,
        name,
        tags=tags,
        enabled=cfg.logger.enabled and enabled,
        models_dir=cfg.paths.models,
    )

"""MLflow tracking for the study: one study (parent) run, one child run per technique training job.

Each training stage is its own process, so the parent is found again through a tag rather than
passed in memory: the caller builds a `study_key` (e.g. "<study>/<dataset>/<manifest sha[:12]>",
or one derived from a Hydra sweep dir) and the newest parent with that key is reused.

Everything goes through an explicit `MlflowClient`, never the fluent `mlflow.start_run` stack,
so a Lightning `MLFlowLogger` can log into the same child run at the same time.

Tracking never stops training: when the store cannot be written (locked or corrupt SQLite file,
unwritable folder, unreachable server) the tracker logs one warning that says where the metrics
are and how to log them later, then turns itself into a no-op.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

from smallvision.errors import DataError

log = logging.getLogger(__name__)

T = TypeVar("T")

STUDY_KEY_TAG = "smallvision.study_key"
# The key may hold any character, but MLflow filter strings cannot escape quotes reliably,
# so parents are looked up by a hex digest of the key kept in a second tag.
STUDY_ID_TAG = "smallvision.study_id"
ROLE_TAG = "smallvision.role"
ROLE_STUDY, ROLE_TECHNIQUE = "study", "technique"

COMPARISON_FILE = "comparison.json"
METRICS_FILE, HISTORY_FILE, CONFUSION_FILE = "metrics.json", "history.csv", "confusion.json"

_REASON_CHARS = 500  # a SQLAlchemy error drags the SQL and a docs link along; the first line is the reason
_USERINFO = re.compile(r"//[^/@\s]+@")  # the "user:password@" of a URI inside an error message


def resolve_tracking_uri(configured: str | None, project_root: Path, environ: Mapping[str, str] | None = None) -> str:
    """The tracking URI: `configured` (cfg.logger.tracking_uri) > $MLFLOW_TRACKING_URI > a SQLite file in the project.

    SQLite is the default because recent MLflow refuses the old `./mlruns` file store. A relative
    SQLite path is taken relative to `project_root`, not the working directory.
    `environ` defaults to `os.environ` (a parameter so callers and tests can pass their own).
    """
    env = os.environ if environ is None else environ
    uri = (
        configured or env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(project_root).resolve().as_posix()}/mlflow.db"
    )
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        db_path = uri[len(prefix) :]
        if db_path and db_path != ":memory:" and not Path(db_path).is_absolute():
            uri = f"{prefix}{(Path(project_root).resolve() / db_path).as_posix()}"
    return uri


def _param_value(value: Any) -> str:
    """MLflow stores params as strings of bounded length; longer values are cut rather than rejected."""
    return str(value)[:MAX_PARAM_VAL_LENGTH]


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as MLflow params.

    {"techniques": {"baseline": {"lr": 1e-4}}} -> {"techniques.baseline.lr": "0.0001"}.
    Lists stay whole (their str()); values are cut to MLflow's param length limit.
    """
    flat: dict[str, str] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = _param_value(value)
    return flat


def git_commit(root: Path) -> str | None:
    """The commit checked out at `root`, or None when it is not a git work tree (or git is missing)."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False)
    except OSError:
        return None
    sha = result.stdout.strip()
    return sha if result.returncode == 0 and sha else None


def _redact(uri: str) -> str:
    """The URI without any user:password part, so a warning never prints credentials."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _reason(err: BaseException) -> str:
    """The error's first line, without credentials (MLflow's REST errors repeat the full URI)."""
    lines = str(err).strip().splitlines()
    first = _USERINFO.sub("//", lines[0] if lines else "")
    return f"{type(err).__name__}: {first}"[:_REASON_CHARS]


def _batches(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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
        http_timeout_s: float = 10,
        http_max_retries: int = 1,
        models_dir: str = "models",
        log_later_command: str = "python pipelines/log_metrics.py technique={technique}",
    ):
        """`tags` go on the parent and every child. `artifact_location` is for a newly created
        experiment; by default a SQLite store keeps artifacts in `mlartifacts/` beside the database
        (MLflow's own default is relative to the working directory). `http_*` bound how long an
        unreachable server can stall training (whole seconds; applied only where the
        MLFLOW_HTTP_REQUEST_* variables are unset). `models_dir` and `log_later_command` go into
        the failure warning."""
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.study_key = study_key
        self.study_name = study_name
        self.tags = dict(tags or {})
        self.enabled = enabled
        self.artifact_location = artifact_location or _default_artifact_location(tracking_uri)
        self.models_dir = models_dir
        self.log_later_command = log_later_command
        self._study_id = hashlib.sha256(study_key.encode("utf-8")).hexdigest()[:32]
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._parent_run_id: str | None = None
        self._technique: str | None = None  # the one being trained, for the failure warning
        if enabled and urlsplit(tracking_uri).scheme in ("http", "https"):
            # MLflow's defaults (120 s timeout, 7 retries with backoff) would stall training for minutes.
            # Both are parsed as int by MLflow: "10.0" would be a ValueError on every request.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(math.ceil(http_timeout_s)))
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(int(http_max_retries)))

    @property
    def parent_run_id(self) -> str | None:
        """The study run's id once it was found or created (None while disabled)."""
        return self._parent_run_id

    # -- failure handling ------------------------------------------------------------------

    def _guarded(self, action: Callable[[], T]) -> T | None:
        """Run one tracking action; on any store error warn once, switch tracking off, return None."""
        if not self.enabled:
            return None
        try:
            return action()
        except Exception as err:  # noqa: BLE001 -- any store/transport failure: tracking must never stop training
            self._disable(err)
            return None

    def _disable(self, err: BaseException) -> None:
        self.enabled = False
        technique = self._technique or "<technique>"
        log.warning(
            "MLflow tracking at %s failed: %s; training continues, metrics are in %s/%s/%s; log them later with: %s",
            _redact(self.tracking_uri),
            _reason(err),
            self.models_dir,
            technique,
            METRICS_FILE,
            self.log_later_command.format(technique=technique),
        )
        log.debug("MLflow failure details", exc_info=err)

    # -- store access ----------------------------------------------------------------------

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)  # a SQLite store migrates here
        return self._client

    def _experiment(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment_name)
            if found is not None and found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            if found is not None:
                self._experiment_id = found.experiment_id
            else:
                try:
                    self._experiment_id = self.client.create_experiment(
                        self.experiment_name, artifact_location=self.artifact_location
                    )
                except MlflowException:  # a parallel sweep job created it first
                    again = self.client.get_experiment_by_name(self.experiment_name)
                    if again is None:
                        raise
                    self._experiment_id = again.experiment_id
        return self._experiment_id

    def _parent(self) -> str:
        """The newest study run with this key, created when there is none."""
        if self._parent_run_id is None:
            experiment_id = self._experiment()
            found = self.client.search_runs(
                [experiment_id],
                filter_string=f"tags.`{STUDY_ID_TAG}` = '{self._study_id}' and tags.`{ROLE_TAG}` = '{ROLE_STUDY}'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
            if found:
                self._parent_run_id = found[0].info.run_id
            else:
                run = self.client.create_run(
                    experiment_id,
                    run_name=self.study_name,
                    tags={
                        **self.tags,
                        STUDY_KEY_TAG: self.study_key,
                        STUDY_ID_TAG: self._study_id,
                        ROLE_TAG: ROLE_STUDY,
                    },
                )
                self._parent_run_id = run.info.run_id
        return self._parent_run_id

    def _start_child(self, technique: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        parent = self._parent()
        if self.client.get_run(parent).info.status != RunStatus.to_string(RunStatus.RUNNING):
            self.client.update_run(parent, status=RunStatus.to_string(RunStatus.RUNNING))
        run = self.client.create_run(
            self._experiment(),
            run_name=technique,
            tags={
                **self.tags,
                "technique": technique,
                **tags,
                MLFLOW_PARENT_RUN_ID: parent,
                STUDY_KEY_TAG: self.study_key,
                ROLE_TAG: ROLE_TECHNIQUE,
            },
        )
        run_id = run.info.run_id
        param_list = [Param(key, _param_value(value)) for key, value in params.items()]
        for batch in _batches(param_list, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, params=batch)
        return run_id

    def _end(self, run_id: str | None, status: str) -> None:
        """Set the child's final status (after any Lightning logger's own, so this one wins);
        the parent mirrors the outcome of its latest job."""
        if run_id is None:
            return

        def end() -> None:
            self.client.set_terminated(run_id, status)
            if self._parent_run_id is not None:
                self.client.set_terminated(self._parent_run_id, status)

        self._guarded(end)

    # -- public API ------------------------------------------------------------------------

    @contextmanager
    def technique_run(self, technique: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> Iterator[str | None]:
        """A child run of the study for one training job; yields its run_id (None when tracking is off or broken).

        Final status: FINISHED on normal exit, FAILED on an exception, KILLED on KeyboardInterrupt
        or SystemExit (Lightning turns Ctrl-C into sys.exit(1) and SIGTERM into a SystemExit);
        the exception is re-raised.
        """
        self._technique = technique
        run_id = self._guarded(lambda: self._start_child(technique, params, tags))
        try:
            yield run_id
        except Exception:
            self._end(run_id, RunStatus.to_string(RunStatus.FAILED))
            raise
        except BaseException:
            self._end(run_id, RunStatus.to_string(RunStatus.KILLED))
            raise
        self._end(run_id, RunStatus.to_string(RunStatus.FINISHED))

    def log_metrics(self, run_id: str | None, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Numeric metrics at one step (0 when None) on a run."""
        if run_id is None:
            return
        timestamp = int(time.time() * 1000)
        entries = [Metric(key, float(value), timestamp, step or 0) for key, value in metrics.items()]

        def log_all() -> None:
            for batch in _batches(entries, MAX_METRICS_PER_BATCH):
                self.client.log_batch(run_id, metrics=batch)

        self._guarded(log_all)

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

        self._guarded(log_all)

    def log_comparison(self, rows: list[dict[str, Any]], artifacts: Iterable[Path] = ()) -> None:
        """The comparison on the study run: `comparison.json` (pandas "split" layout, readable by
        `mlflow.load_table`), a metric "<technique>.<key>" per numeric value, and `artifacts`
        (e.g. comparison.md/png). Rewritten, not appended, when the study is visualised again."""
        parent = self._guarded(self._parent)
        if parent is None:
            return
        columns = list(dict.fromkeys(key for row in rows for key in row))
        table = {"columns": columns, "data": [[row.get(column) for column in columns] for row in rows]}
        self._guarded(lambda: self.client.log_dict(parent, table, COMPARISON_FILE))
        metrics = {
            f"{row['technique']}.{key}": value
            for row in rows
            if "technique" in row
            for key, value in row.items()
            if _is_number(value)
        }
        self.log_metrics(parent, metrics)
        self.log_artifacts(parent, artifacts)


def study_tracker(cfg: Mapping[str, Any], root: Path, manifest_digest: str, sweep_dir: str | None = None,
                  enabled: bool = True) -> StudyTracker:
    """The tracker of the study `cfg` runs in: its parent run is found by the study name, the dataset and the
    manifest (so the training stages, visualize and a later `pipelines/log_metrics.py` share one parent), or by
    the sweep folder for a Hydra sweep's jobs."""
    study, dataset = cfg["study"], cfg["data"]["name"]
    key = f"sweep:{sweep_dir}" if sweep_dir else f"{study}/{dataset}/{manifest_digest[:12]}"
    name = f"sweep {Path(sweep_dir).name}" if sweep_dir else f"study {study} ({dataset})"
    return StudyTracker(resolve_tracking_uri(cfg["logger"].get("tracking_uri"), root), cfg["logger"]["experiment_name"],
                        key, name, tags={"dataset": dataset, "git_commit": git_commit(root) or "unknown"},
                        enabled=bool(cfg["logger"].get("enabled", True)) and enabled,
                        models_dir=cfg["paths"]["models"])


def _default_artifact_location(tracking_uri: str) -> str | None:
    """`mlartifacts/` beside a SQLite database file; None (the server decides) for anything else."""
    prefix = "sqlite:///"
    db_path = tracking_uri[len(prefix) :] if tracking_uri.startswith(prefix) else ""
    if not db_path or db_path == ":memory:" or not Path(db_path).is_absolute():
        return None
    return (Path(db_path).parent / "mlartifacts").as_uri()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def lightning_logger(tracker: StudyTracker, run_id: str | None, **kwargs: Any) -> Any:
    """A Lightning `MLFlowLogger` that logs per-epoch metrics into the child run `run_id`, or None
    when there is no run (pass `logger=... or False` to the Trainer, since None means Lightning's default logger).

    Unlike the plain logger it leaves the run's status to `technique_run` (the plain one marks the run
    FINISHED after `fit`, before `test` has run), does not log the module's hparams (the config is
    already the run's params), and routes store errors to the tracker's single warning instead of
    crashing the training loop. `kwargs` go to MLFlowLogger (e.g. prefix).
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
            self._tracker._guarded(lambda: MLFlowLogger.log_metrics(self, metrics, step))

        def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
            self._tracker._guarded(lambda: MLFlowLogger.after_save_checkpoint(self, checkpoint_callback))

        def finalize(self, status: str = "success") -> None:
            """No set_terminated here: technique_run sets the final status."""

    return ChildRunLogger


def _read_history(path: Path) -> list[tuple[int, dict[str, float]]]:
    """history.csv as (epoch, {column: value}); empty cells are left out."""
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for number, line in enumerate(csv.DictReader(handle), start=2):
            try:
                epoch = int(line.pop("epoch"))
                values = {key: float(value) for key, value in line.items() if value not in ("", None)}
            except (KeyError, TypeError, ValueError) as err:
                raise DataError(
                    f"{path} line {number} is not a history row (epoch,train_loss,train_acc,val_loss,val_acc): {err}; "
                    "rerun the technique's training stage"
                ) from err
            rows.append((epoch, values))
    return rows


def log_from_metrics_files(
    tracker: StudyTracker,
    technique_dirs: list[Path],
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Log finished techniques from their files on disk (the "log later" path after a tracking failure).

    Each folder (models/<technique>/) holds metrics.json and, when present, history.csv (one metric
    step per epoch) and confusion.json; each becomes a child run of the study. Returns the
    metrics.json contents, one dict per folder, ready for `tracker.log_comparison`.
    """
    rows = []
    for folder in map(Path, technique_dirs):
        metrics_path = folder / METRICS_FILE
        if not metrics_path.is_file():
            raise DataError(
                f"{metrics_path} not found: train that technique first (or pass its models/<technique> folder)"
            )
        try:
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f"{metrics_path} is not valid JSON ({err}); rerun the technique's training stage") from err
        technique = str(metrics.get("technique", folder.name))
        run_tags = {key: str(metrics[key]) for key in ("technique", "backbone") if key in metrics}
        run_tags.update(tags or {})
        history_path = folder / HISTORY_FILE
        history = _read_history(history_path) if history_path.is_file() else []  # read first: a bad file is no run
        with tracker.technique_run(technique, params or {}, run_tags) as run_id:
            tracker.log_metrics(run_id, {key: value for key, value in metrics.items() if _is_number(value)})
            for epoch, values in history:
                tracker.log_metrics(run_id, values, step=epoch)
            tracker.log_artifacts(
                run_id, [path for path in (metrics_path, history_path, folder / CONFUSION_FILE) if path.exists()]
            )
        rows.append(metrics)
    return rows

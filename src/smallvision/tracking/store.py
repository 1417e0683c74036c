"""Where MLflow runs go and how values are shaped for it: the tracking URI, the artifact folder,
config values as params, and error texts safe to print."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from smallvision.files import special_file_kind

T = TypeVar("T")

_SQLITE = "sqlite:///"
_REASON_CHARS = 500  # a SQLAlchemy error drags the SQL and a docs link along; the first line is the reason
_USERINFO = re.compile(r"//[^/@\s]+@")  # the "user:password@" of a URI inside an error message


# What DVC tells a stage's command (dvc.env): the main repository's root, also when a queued or `--temp` experiment
# runs in a temporary copy under .dvc/tmp/exps that DVC deletes afterwards, and the experiment's name.
DVC_ROOT = "DVC_ROOT"
DVC_EXP_NAME = "DVC_EXP_NAME"
DVC_EXPERIMENT_TAG = "dvc.experiment"  # the MLflow tag that holds the DVC experiment's name


def main_project_root(project_root: Path, environ: Mapping[str, str] | None = None) -> Path:
    """The project whose MLflow store runs go to: the main repository's root DVC gives ($DVC_ROOT) when a DVC
    command runs the stage, else `project_root`. `environ` defaults to `os.environ`."""
    env = os.environ if environ is None else environ
    return Path(env.get(DVC_ROOT) or project_root)


def dvc_experiment(environ: Mapping[str, str] | None = None) -> str | None:
    """The name of the DVC experiment running this stage (`dvc exp run`: workspace, queued or --temp); None
    under `dvc repro` or outside DVC. `environ` defaults to `os.environ`."""
    env = os.environ if environ is None else environ
    return env.get(DVC_EXP_NAME) or None


def resolve_tracking_uri(configured: str | None, project_root: Path, environ: Mapping[str, str] | None = None) -> str:
    """The tracking URI: `configured` (cfg.logger.tracking_uri) > $MLFLOW_TRACKING_URI > a SQLite file in the project.

    SQLite is the default because recent MLflow refuses the old `./mlruns` file store. A relative
    SQLite path is taken relative to the project's root, not the working directory: the main repository's
    (`main_project_root`), so a queued or `--temp` DVC experiment logs to the project's store, not to one in its
    temporary copy. `environ` defaults to `os.environ` (a parameter so callers and tests can pass their own).
    """
    env = os.environ if environ is None else environ
    project_root = main_project_root(project_root, env)
    uri = (
        configured or env.get("MLFLOW_TRACKING_URI") or f"{_SQLITE}{Path(project_root).resolve().as_posix()}/mlflow.db"
    )
    if uri.startswith(_SQLITE):
        db_path = uri[len(_SQLITE) :]
        # (a "file:..." SQLite URI, e.g. "file:/path/mlflow.db?mode=ro&uri=true", is left as it is)
        if db_path and db_path != ":memory:" and not db_path.startswith("file:") and not Path(db_path).is_absolute():
            uri = f"{_SQLITE}{(Path(project_root).resolve() / db_path).as_posix()}"
    return uri


_SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def store_problem(tracking_uri: str) -> str | None:
    """Why the SQLite file of `tracking_uri` cannot be a store, checked without handing it to MLflow (which retries
    a FIFO for minutes and fails deep in SQLAlchemy on garbage): it is a special file, a folder, or a file that is not
    an SQLite database. None when it is one, is absent or empty (MLflow creates it), or the store is not a file."""
    db_path = tracking_uri[len(_SQLITE) :] if tracking_uri.startswith(_SQLITE) else ""
    if not db_path or db_path == ":memory:" or db_path.startswith("file:"):
        return None
    path = Path(db_path)
    if kind := special_file_kind(path):
        return f"the MLflow store {path} is {kind}, not an SQLite database file"
    if path.is_dir():
        return f"the MLflow store {path} is a folder, not an SQLite database file"
    if path.is_file() and path.stat().st_size > 0:
        with open(path, "rb") as fh:
            if fh.read(len(_SQLITE_HEADER)) != _SQLITE_HEADER:
                return f"the MLflow store {path} is not an SQLite database (move it aside, or set logger.tracking_uri)"
    return None


def default_artifact_location(tracking_uri: str) -> str | None:
    """`mlartifacts/` beside a SQLite database file; None (the server decides) for anything else."""
    db_path = tracking_uri[len(_SQLITE) :] if tracking_uri.startswith(_SQLITE) else ""
    if not db_path or db_path == ":memory:" or not Path(db_path).is_absolute():
        return None
    return (Path(db_path).parent / "mlartifacts").as_uri()


def dashboard_url(tracking_uri: str, experiment_id: str, ui_url: str) -> str:
    """The experiment's page in the MLflow UI, on its runs table: an http(s) store is its own UI, any other is served
    at `ui_url` by `mlflow ui`. MLflow 3.17's UI opens every experiment on its GenAI pages unless the link asks for
    the model-training view (`workflowType=machine_learning`); it ignores the experiment-kind tag."""
    base = redact(tracking_uri) if urlsplit(tracking_uri).scheme in ("http", "https") else ui_url
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}?workflowType=machine_learning"


def ui_command(tracking_uri: str, ui_url: str) -> str | None:
    """The `mlflow ui` command that serves a local store at `ui_url`; None for a server (it serves itself)."""
    if urlsplit(tracking_uri).scheme in ("http", "https", "databricks"):
        return None
    ui = urlsplit(ui_url)
    return f"mlflow ui --backend-store-uri {tracking_uri} --host {ui.hostname or '127.0.0.1'} --port {ui.port or 5000}"


def param_value(value: Any) -> str:
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
            flat[name] = param_value(value)
    return flat


def redact(uri: str) -> str:
    """The URI without any user:password part, so a warning never prints credentials."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def reason(err: BaseException) -> str:
    """The first line of the error's root cause (MLflow wraps a SQLAlchemy error that wraps the database's own,
    e.g. "attempt to write a readonly database"), without credentials (MLflow's REST errors repeat the full URI)."""
    root = err
    while (cause := root.__cause__ or (None if root.__suppress_context__ else root.__context__)) is not None:
        root = cause
    if not str(root).strip():
        root = err
    lines = str(root).strip().splitlines()
    first = _USERINFO.sub("//", lines[0] if lines else "")
    return f"{type(root).__name__}: {first}"[:_REASON_CHARS]


def batches(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

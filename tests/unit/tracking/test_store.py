"""The tracking store: which store a job logs to, and the configuration flattened into run parameters."""

from __future__ import annotations

from pathlib import Path

from smallvision.tracking import (
    flatten,
    resolve_tracking_uri,
)


def test_resolve_tracking_uri_precedence(tmp_path: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": "http://tracking.example:5000"}
    assert resolve_tracking_uri("sqlite:////abs/x.db", tmp_path, env) == "sqlite:////abs/x.db"
    assert resolve_tracking_uri(None, tmp_path, env) == "http://tracking.example:5000"
    assert resolve_tracking_uri(None, tmp_path, {}) == f"sqlite:///{tmp_path.resolve().as_posix()}/mlflow.db"
    assert resolve_tracking_uri("", tmp_path, {"MLFLOW_TRACKING_URI": ""}).endswith("/mlflow.db")
    # a relative SQLite path means the project, not the working directory
    assert (
        resolve_tracking_uri("sqlite:///runs/t.db", tmp_path, {})
        == f"sqlite:///{tmp_path.resolve().as_posix()}/runs/t.db"
    )


def test_a_dvc_experiment_in_a_temporary_copy_logs_to_the_main_projects_store(tmp_path: Path) -> None:
    """A queued or --temp `dvc exp run` runs in .dvc/tmp/exps/..., which DVC deletes: DVC_ROOT names the main
    repository, whose store the runs go to; DVC_EXP_NAME names the experiment."""
    from smallvision.tracking.store import dvc_experiment

    copy = tmp_path / ".dvc" / "tmp" / "exps" / "run" / "abc"
    dvc = {"DVC_ROOT": str(tmp_path), "DVC_EXP_NAME": "lucid-moth"}
    assert resolve_tracking_uri(None, copy, dvc) == f"sqlite:///{tmp_path.resolve().as_posix()}/mlflow.db"
    assert resolve_tracking_uri("sqlite:///runs/t.db", copy, dvc).endswith(f"{tmp_path.name}/runs/t.db")
    assert resolve_tracking_uri(None, copy, {}) == f"sqlite:///{copy.resolve().as_posix()}/mlflow.db"
    assert dvc_experiment(dvc) == "lucid-moth" and dvc_experiment({}) is None


def test_flatten_nested_config() -> None:
    flat = flatten(
        {
            "techniques": {"baseline": {"optimizer": {"lr": 0.0001, "name": "rmsprop"}, "filters": [32, 64]}},
            "seed": 42,
            "predict": {"input": None},
            "long": "x" * 10_000,
        }
    )
    assert flat["techniques.baseline.optimizer.lr"] == "0.0001"
    assert flat["techniques.baseline.optimizer.name"] == "rmsprop"
    assert flat["techniques.baseline.filters"] == "[32, 64]"
    assert flat["seed"] == "42" and flat["predict.input"] == "None"
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    assert len(flat["long"]) == MAX_PARAM_VAL_LENGTH
    assert len(flat) == 6

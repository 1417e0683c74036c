"""Wiring shared by the thin entry scripts in pipelines/: errors, paths, tracking."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from smallvision import distributed
from smallvision.errors import DataError, SmallvisionError
from smallvision.seeds import aggregate_seeds


def friendly_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a SmallvisionError into one clear line on stderr and exit status 2, instead of a traceback."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except SmallvisionError as err:
            print(f"smallvision: error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def to_dict(cfg: DictConfig) -> dict:
    """The resolved config as plain containers (what library code receives)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]


def _hydra_sweep_dir() -> str | None:
    """The sweep directory when this job is part of a Hydra multirun, else None.

    A DDP child of a sweep job runs that one job in Hydra's run mode; the launching job tells it the sweep.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        return str(Path(hc.sweep.dir).resolve())
    return os.environ.get(distributed.SWEEP_DIR_ENV) or None


def _job_output_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def comparison_rows(models_dir: Path) -> list[dict]:
    """metrics.json of every technique trained so far, in the study's order."""
    rows = []
    for path in sorted(Path(models_dir).glob("*/metrics.json")):
        rows.append(json.loads(path.read_text()))
    order = {"baseline": 0, "augment": 1, "feature_extract": 2, "fine_tune": 3}
    return sorted(rows, key=lambda r: (order.get(r.get("technique"), 9), r.get("technique", "")))


def _sweep_comparison(sweep_dir: Path) -> list[dict]:
    """A sweep's jobs for its MLflow parent: mean and spread per technique across seeds, or, when the
    jobs of a technique differ in more than the seed (e.g. a learning-rate sweep), every job's row."""
    rows = comparison_rows(sweep_dir)
    try:
        return aggregate_seeds(rows)
    except DataError:
        return rows


def run_training(cfg: DictConfig, root: Path | None = None) -> dict:
    """Train cfg.technique into models/<technique>/ (or the sweep job's folder) and track it in MLflow."""
    from smallvision import tracking
    from smallvision.data.cache import manifest_digest
    from smallvision.training import Paths, train_technique, validate

    c = to_dict(cfg)
    validate(c)
    root = Path(root or Path.cwd())
    p = c["paths"]
    sweep_dir = _hydra_sweep_dir()
    out = _job_output_dir() if sweep_dir else root / p["models"] / c["technique"]
    paths = Paths(prepared=root / p["prepared"], cache=root / p["cache"], features=root / p["features"],
                  out=out, models=root / p["models"])
    manifest = paths.prepared / "manifest.csv"
    if not manifest.exists():
        raise DataError(f"{manifest} not found: run the download and split stages first (dvc repro split)")
    digest = manifest_digest(manifest)
    is_zero = distributed.is_rank_zero()
    uri = tracking.resolve_tracking_uri(c["logger"].get("tracking_uri"), root)
    study_key = f"sweep:{sweep_dir}" if sweep_dir else f"{c['study']}/{c['data']['name']}/{digest[:12]}"
    study_name = f"sweep {Path(sweep_dir).name}" if sweep_dir else f"study {c['study']} ({c['data']['name']})"
    tech = c["techniques"][c["technique"]]
    tags = {"technique": c["technique"], "dataset": c["data"]["name"], "seed": str(c["seed"]),
            "backbone": c["backbone"]["name"] if tech["kind"] != "scratch" else "small_convnet",
            "git_commit": tracking.git_commit(root) or "unknown", "manifest": digest[:12]}
    tracker = tracking.StudyTracker(uri, c["logger"]["experiment_name"], study_key, study_name,
                                    tags={"dataset": tags["dataset"], "git_commit": tags["git_commit"]},
                                    enabled=bool(c["logger"].get("enabled", True)) and is_zero,
                                    models_dir=p["models"])
    with tracker.technique_run(c["technique"], tracking.flatten(c), tags) as run_id, \
            distributed.hydra_ddp_job(sweep_dir):
        logger = tracking.lightning_logger(tracker, run_id) or False
        metrics = train_technique(c, paths, logger=logger, progress=c["trainer"].get("progress", True))
        if run_id:
            tracker.log_metrics(run_id, {k: float(v) for k, v in metrics.items()
                                         if isinstance(v, (int, float)) and not isinstance(v, bool)})
            tracker.log_artifacts(run_id, [out / n for n in
                                           ("metrics.json", "history.csv", "confusion.json", "test_predictions.csv")])
    if is_zero:
        tracker.log_comparison(_sweep_comparison(out.parent) if sweep_dir else comparison_rows(paths.models))
        print(f"{c['technique']}: test accuracy {metrics['test_accuracy']:.4f} "
              f"(95% CI {metrics['ci95_low']:.4f}-{metrics['ci95_high']:.4f}, {metrics['test_images']} images) -> {out}")
    return metrics

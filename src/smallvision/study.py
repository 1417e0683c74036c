"""One training job of the study, as a DVC stage or a Hydra sweep job: where it reads and writes, its MLflow
runs, and a seed sweep's comparison across its jobs."""

from __future__ import annotations

import json
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from smallvision import distributed
from smallvision.cli import to_dict
from smallvision.errors import ConfigError, DataError
from smallvision.metrics import comparison_rows
from smallvision.seeds import aggregate_seeds


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


SEED_SWEEP_KEYS = frozenset({"seed", "technique"})


def _multirun_config(sweep_dir: Path) -> DictConfig | None:
    """Hydra's <sweep_dir>/multirun.yaml (written before the first job), None when that file is missing."""
    saved = Path(sweep_dir) / "multirun.yaml"
    return OmegaConf.load(saved) if saved.is_file() else None  # type: ignore[return-value]


def swept_keys(sweep_dir: Path) -> set[str] | None:
    """The config keys a sweep varies (`seed=0,1,2 technique=baseline,augment` -> {"seed", "technique"}), from
    Hydra's <sweep_dir>/multirun.yaml; None when that file is missing."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    saved = _multirun_config(sweep_dir)
    if saved is None:
        return None
    task = OmegaConf.select(saved, "hydra.overrides.task", default=[])
    overrides = OverridesParser.create().parse_overrides([str(o) for o in task])
    return {o.key_or_group for o in overrides if o.is_sweep_override()}


def _varies_more_than_the_seed(sweep_dir: Path) -> list[str]:
    """The swept keys besides the seed and the technique (a learning-rate sweep: its jobs must not be averaged)."""
    return sorted((swept_keys(sweep_dir) or set()) - SEED_SWEEP_KEYS)


def _sweep_comparison(sweep_dir: Path) -> list[dict]:
    """A sweep's jobs for its MLflow parent: mean and spread per technique across seeds, or, when the
    jobs of a technique differ in more than the seed (e.g. a learning-rate sweep), every job's row."""
    rows = comparison_rows(sweep_dir)
    if _varies_more_than_the_seed(sweep_dir):  # known from the first job on, so no job logs a mean
        return rows
    try:
        return aggregate_seeds(rows)
    except DataError:
        return rows


def write_seed_comparison(sweep_dir: Path, visualize: dict) -> list[Path]:
    """seed_comparison.{json,md,png} in `sweep_dir` from its finished jobs: mean, std, min and max of the test
    accuracy across seeds per technique, each seed as a dot; `visualize` is cfg.visualize (the book's reference,
    its label, dpi). Raises DataError when there is no finished job or the jobs differ in more than the seed and
    the technique (the sweep varies another key, or a technique has two jobs with the same seed)."""
    from smallvision.visualize.comparison import write_seed_comparison as write

    rows = comparison_rows(sweep_dir)
    if not rows:
        raise DataError(f"no job folder with a metrics.json in {sweep_dir}: is it a finished sweep's folder "
                        "(multirun/<date>/<time>)?")
    others = _varies_more_than_the_seed(sweep_dir)
    if others:
        raise DataError(f"the sweep in {sweep_dir} also varies {', '.join(others)}: its jobs differ in more than the "
                        "seed and are not averaged (run one seed sweep per setting)")
    return write(rows, visualize["reference"], visualize["reference_label"], Path(sweep_dir),
                 dpi=int(visualize.get("dpi", 100)))


def sweep_visualize_config(sweep_dir: Path) -> dict | None:
    """cfg.visualize as the sweep ran it (from Hydra's <sweep_dir>/multirun.yaml), None when that file is missing."""
    cfg = _multirun_config(sweep_dir)
    if cfg is None:
        return None
    if "visualize" not in cfg:
        raise DataError(f"{Path(sweep_dir) / 'multirun.yaml'} has no visualize section: is {sweep_dir} a smallvision "
                        "sweep?")
    return OmegaConf.to_container(cfg.visualize, resolve=True)  # type: ignore[return-value]


def _sweep_files(sweep_dir: Path, visualize: dict) -> list[Path]:
    """The seed comparison after a sweep job (covering every job finished so far; after the last job, the sweep);
    none when the jobs differ in more than the seed (the parent run then lists every job)."""
    try:
        return write_seed_comparison(sweep_dir, visualize)
    except DataError:
        return []


def _sweep_head(sweep_dir: Path, seed: int) -> Path | None:
    """The feature-extract checkpoint of this sweep's job with the same seed (what its fine-tune jobs start from),
    None when the sweep has no such job. Raises ConfigError when several jobs qualify (the sweep varies another
    key of feature-extract, so which head to start from is ambiguous)."""
    from smallvision.training import CHECKPOINT

    jobs = []
    for path in sorted(Path(sweep_dir).glob("*/metrics.json")):
        job = json.loads(path.read_text())
        if job.get("technique") == "feature_extract" and job.get("seed") == seed:
            jobs.append(path.parent)
    if len(jobs) > 1:
        raise ConfigError(f"the sweep in {sweep_dir} has {len(jobs)} feature_extract jobs with seed {seed}: fine-tune "
                          "cannot tell which head to start from; sweep fine-tune separately")
    return jobs[0] / CHECKPOINT if jobs else None


def run_training(cfg: DictConfig, root: Path | None = None) -> dict:
    """Train cfg.technique into models/<technique>/ (or the sweep job's folder) and track it in MLflow.

    In a sweep, fine-tune starts from the sweep's own feature-extract job with the same seed (run feature_extract
    first: `-m technique=feature_extract,fine_tune seed=0,1,2`), else from models/feature_extract/."""
    from smallvision import tracking
    from smallvision.data.cache import manifest_digest
    from smallvision.training import Paths, train_technique, validate

    c = to_dict(cfg)
    tech = validate(c)
    root = Path(root or Path.cwd())
    p = c["paths"]
    sweep_dir = _hydra_sweep_dir()
    out = _job_output_dir() if sweep_dir else root / p["models"] / c["technique"]
    head = _sweep_head(out.parent, int(c["seed"])) if sweep_dir and tech["kind"] == "fine_tune" else None
    paths = Paths(prepared=root / p["prepared"], cache=root / p["cache"], features=root / p["features"],
                  out=out, models=root / p["models"], feature_extract=head)
    manifest = paths.prepared / "manifest.csv"
    if not manifest.exists():
        raise DataError(f"{manifest} not found: run the download and split stages first (dvc repro split)")
    digest = manifest_digest(manifest)
    is_zero = distributed.is_rank_zero()
    tracker = tracking.study_tracker(c, root, digest, sweep_dir, enabled=is_zero)
    tags = {"technique": c["technique"], "dataset": c["data"]["name"], "seed": str(c["seed"]),
            "backbone": c["backbone"]["name"] if tech["kind"] != "scratch" else "small_convnet",
            "git_commit": tracker.tags["git_commit"], "manifest": digest[:12]}
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
        if sweep_dir:
            tracker.log_comparison(_sweep_comparison(out.parent), _sweep_files(out.parent, c["visualize"]))
        else:
            tracker.log_comparison(comparison_rows(paths.models))
        print(f"{c['technique']}: test accuracy {metrics['test_accuracy']:.4f} "
              f"(95% CI {metrics['ci95_low']:.4f}-{metrics['ci95_high']:.4f}, {metrics['test_images']} images) -> {out}")
    return metrics

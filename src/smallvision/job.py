"""One training job of the study, as a DVC stage or a Hydra sweep job: where it reads and writes, and its MLflow
runs. The entry script (pipelines/train.py) passes in where Hydra runs it."""

from __future__ import annotations

from pathlib import Path

from smallvision import distributed, settings, sweeps
from smallvision.data.manifest import MANIFEST, manifest_digest
from smallvision.errors import DataError
from smallvision.networks import network_name
from smallvision.runs import RESULT_FILES, comparison_rows, numeric


def run_training(cfg: dict, root: Path, sweep_dir: str | None = None, job_dir: Path | None = None) -> dict:
    """Train cfg["technique"] into models/<technique>/ (in a sweep: `job_dir`, the job's folder) and track it.

    In a sweep, fine-tune starts from the sweep's own feature-extract job with the same seed (run feature_extract
    first: `-m technique=feature_extract,fine_tune seed=0,1,2`), else from models/feature_extract/."""
    from smallvision import tracking
    from smallvision.training import Paths, train_technique

    tech = settings.technique(cfg)
    root = Path(root)
    p = cfg["paths"]
    out = Path(job_dir) if sweep_dir else root / p["models"] / cfg["technique"]
    head = None
    if sweep_dir and tech["kind"] == "fine_tune":
        head = sweeps.sweep_head(out.parent, int(cfg["seed"]), network_name(tech, cfg["backbone"]))
    paths = Paths.of(p, root, out, head)
    manifest = paths.prepared / MANIFEST
    if not manifest.exists():
        raise DataError(f"{manifest} not found: run the download and split stages first (dvc repro split)")
    digest = manifest_digest(manifest)
    is_zero = distributed.is_rank_zero()
    tracker = tracking.study_tracker(cfg, root, digest, sweep_dir, enabled=is_zero)
    tags = {
        "technique": cfg["technique"],
        "dataset": cfg["data"]["name"],
        "seed": str(cfg["seed"]),
        "backbone": network_name(tech, cfg["backbone"]),
        "git_commit": tracker.tags["git_commit"],
        "manifest": digest[:12],
    }
    with (
        tracker.technique_run(cfg["technique"], tracking.flatten(cfg), tags) as run_id,
        distributed.hydra_ddp_job(sweep_dir),
    ):
        logger = tracking.lightning_logger(tracker, run_id) or False
        metrics = train_technique(cfg, paths, logger=logger, progress=cfg["trainer"]["progress"])
        tracker.log_metrics(run_id, numeric(metrics))
        tracker.log_artifacts(run_id, [out / name for name in RESULT_FILES])
    if is_zero:
        if sweep_dir:
            tracker.log_comparison(
                sweeps.sweep_comparison(out.parent), sweeps.comparison_so_far(out.parent, cfg["visualize"])
            )
        else:
            tracker.log_comparison(comparison_rows(paths.models))
        tta = f"; with flip TTA {metrics['test_accuracy_tta']:.4f}" if "test_accuracy_tta" in metrics else ""
        print(
            f"{cfg['technique']}: test accuracy {metrics['test_accuracy']:.4f} "
            f"(95% CI {metrics['ci95_low']:.4f}-{metrics['ci95_high']:.4f}, {metrics['test_images']} images){tta} -> {out}"
        )
    return metrics

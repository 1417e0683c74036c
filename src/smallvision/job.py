"""One training job of the study, as a DVC stage or a Hydra sweep job: where it reads and writes, and its MLflow
runs. The entry script (pipelines/train.py) passes in where Hydra runs it."""

from __future__ import annotations

import logging
from pathlib import Path

from smallvision import distributed, evidence, provenance, sweeps
from smallvision.data.manifest import MANIFEST, manifest_digest
from smallvision.errors import DataError
from smallvision.networks import network_name
from smallvision.schema import Settings

log = logging.getLogger(__name__)


def run_training(
    settings: Settings,
    root: Path,
    sweep_dir: str | None = None,
    job_dir: Path | None = None,
    config_read: dict | None = None,
) -> dict:
    """Train settings.technique into models/<technique>/ (in a sweep: `job_dir`, the job's folder) and track it:
    its run (`tracking.technique_run`, `tracking.log_results`: the same run `pipelines/log_metrics.py` makes from
    the folder) with `config_read` (the config it read), then the study's comparison and champion.

    In a sweep, fine-tune starts from the sweep's own feature-extract job with the same seed (run feature_extract
    first: `-m technique=feature_extract,fine_tune seed=0,1,2`), else from models/feature_extract/."""
    from smallvision import tracking
    from smallvision.training import Paths, train_technique

    tech, technique = settings.selected, settings.technique
    root = Path(root)
    out = Path(job_dir) if sweep_dir else root / settings.paths.models / technique
    head = None
    if sweep_dir and tech.kind == "fine_tune":
        head = sweeps.sweep_head(out.parent, settings.seed, network_name(tech, settings.backbone))
    paths = Paths.of(settings.paths, root, out, head)
    manifest = paths.prepared / MANIFEST
    if not manifest.exists():
        raise DataError(f"{manifest} not found: run the download and split stages first (dvc repro split)")
    digest = manifest_digest(manifest)
    is_zero = distributed.is_rank_zero()
    tracker = tracking.study_tracker(settings, root, digest, sweep_dir, enabled=is_zero)
    with (
        tracking.technique_run(tracker, settings, out, paths.prepared, digest, config_read or {}) as run_id,
        distributed.hydra_ddp_job(sweep_dir),
    ):
        logger = tracking.lightning_logger(tracker, run_id) or False
        metrics = train_technique(
            settings, paths, logger=logger, progress=settings.trainer.progress, commit=tracker.commit
        )
        tracking.log_results(tracker, run_id, settings, out, paths.prepared)
    log_cfg = settings.logger
    if is_zero:
        # the study's comparison, of its techniques only (a run of another preset, seed or manifest is left out);
        # a sweep's is drawn when the sweep ends (smallvision.sweep_callback)
        if not sweep_dir:
            study = evidence.study_comparison(paths.models, provenance.identity(settings, digest))
            tracker.log_comparison(study.rows)
            for line in study.messages():
                log.warning("%s", line)
        tta = f"; with flip TTA {metrics['test_accuracy_tta']:.4f}" if "test_accuracy_tta" in metrics else ""
        print(
            f"{technique}: test accuracy {metrics['test_accuracy']:.4f} "
            f"(95% CI {metrics['ci95_low']:.4f}-{metrics['ci95_high']:.4f}, {metrics['test_images']} images){tta} -> {out}"
        )
        # the champion is the study's: a sweep's jobs are experiments beside it and leave the registry alone
        if not sweep_dir and (champion := tracking.update_champion(tracker, log_cfg.registered_model)):
            print(champion)
        if hint := tracker.dashboard_hint(log_cfg.ui_url):
            print(hint)
    return metrics

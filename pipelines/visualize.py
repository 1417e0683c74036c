"""Draw the study (the visualize stage): figures, comparison and reports/index.html from every trained technique.

python pipelines/visualize.py
python pipelines/visualize.py visualize.filters.steps=40 visualize.curves.smoothing=0.8
"""

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from smallvision import stages, tracking
from smallvision.data.manifest import MANIFEST, manifest_digest
from smallvision.entrypoints import bound_mlflow_requests, friendly_errors, hydra_errors, load_settings, show_config
from smallvision.visualize.stage import run_visualize, timing_summary

log = logging.getLogger(__name__)


@hydra_errors
@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@friendly_errors
def main(cfg: DictConfig) -> None:
    settings, root = load_settings(cfg), Path.cwd()
    plain = settings.model_dump()
    shown = show_config("visualize", plain, stages.reads("visualize", plain))
    out = run_visualize(settings, root)
    bound_mlflow_requests(settings.logger)
    tracker = tracking.study_tracker(settings, root, manifest_digest(root / settings.paths.prepared / MANIFEST))
    tracker.log_report(out.rows, out.study_files, out.per_technique, out.timings["total"], out.reports, out.audit)
    tracking.log_config(tracker, tracker.parent_run_id, shown, "visualize")
    for note in out.notes:
        log.warning(note)
    print(f"visualize: {out.index} ({timing_summary(out)})")
    if hint := tracker.dashboard_hint(settings.logger.ui_url):
        print(hint)


if __name__ == "__main__":
    main()

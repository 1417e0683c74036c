"""Draw the study (the visualize stage): figures, comparison and reports/index.html from every trained technique.

python pipelines/visualize.py
python pipelines/visualize.py visualize.filters.steps=40 visualize.curves.smoothing=0.8
"""

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from smallvision import stages, tracking
from smallvision.checks import check_settings
from smallvision.data.manifest import MANIFEST, manifest_digest
from smallvision.entrypoints import bound_mlflow_requests, friendly_errors, show_config, to_dict
from smallvision.visualize.stage import run_visualize, timing_summary

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@friendly_errors
def main(cfg: DictConfig) -> None:
    c, root = to_dict(cfg), Path.cwd()
    check_settings(c, "visualize")
    shown = show_config("visualize", c, stages.reads("visualize", c))
    out = run_visualize(c, root)
    bound_mlflow_requests(c["logger"])
    tracker = tracking.study_tracker(c, root, manifest_digest(root / c["paths"]["prepared"] / MANIFEST))
    tracker.log_report(out.rows, out.study_files, out.per_technique, out.timings["total"], out.reports)
    tracking.log_config(tracker, tracker.parent_run_id, shown, "visualize")
    for note in out.notes:
        log.warning(note)
    print(f"visualize: {out.index} ({timing_summary(out)})")
    if hint := tracker.dashboard_hint(c["logger"]["ui_url"]):
        print(hint)


if __name__ == "__main__":
    main()

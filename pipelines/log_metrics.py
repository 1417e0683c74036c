"""Log a finished technique to MLflow from its files, after tracking failed while it trained (store locked or
server unreachable: training went on and wrote models/<technique>/). Becomes a child run of the same study run.

    python pipelines/log_metrics.py technique=fine_tune
    python pipelines/log_metrics.py technique=augment experiment=quick   # the overrides the training run had
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from smallvision import evidence, provenance, tracking
from smallvision.checks import check_settings, one_of
from smallvision.data.manifest import MANIFEST, manifest_digest
from smallvision.entrypoints import bound_mlflow_requests, friendly_errors, to_dict
from smallvision.errors import DataError


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@friendly_errors
def main(cfg: DictConfig) -> None:
    c, root = to_dict(cfg), Path.cwd()
    one_of(c["technique"], "technique", list(c["techniques"]))
    check_settings(c, "log_metrics")
    bound_mlflow_requests(c["logger"])
    models = root / c["paths"]["models"]
    digest = manifest_digest(root / c["paths"]["prepared"] / MANIFEST)
    tracker = tracking.study_tracker(c, root, digest)
    tracking.log_from_metrics_files(tracker, [models / c["technique"]], params=tracking.flatten(c))
    tracker.log_comparison(evidence.study_comparison(models, provenance.identity(c, digest)).rows)
    if not tracker.enabled:
        raise DataError("MLflow tracking failed again (see the warning above); nothing was logged")
    print(f"{c['technique']}: logged to MLflow as a child of study run {tracker.parent_run_id}")


if __name__ == "__main__":
    main()

"""Log a finished technique to MLflow from its files, after tracking failed while it trained (store locked or
server unreachable: training went on and wrote models/<technique>/). Becomes a child run of the same study run,
the run the training job would have made (`tracking.publish_folder`).

    python pipelines/log_metrics.py technique=fine_tune
    python pipelines/log_metrics.py technique=augment experiment=quick   # the overrides the training run had
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from smallvision import evidence, provenance, stages, tracking
from smallvision.checks import check_settings, one_of
from smallvision.data.manifest import MANIFEST, manifest_digest
from smallvision.entrypoints import bound_mlflow_requests, friendly_errors, show_config, to_dict
from smallvision.errors import ConfigError, DataError
from smallvision.runs import read_metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@friendly_errors
def main(cfg: DictConfig) -> None:
    c, root = to_dict(cfg), Path.cwd()
    one_of(c["technique"], "technique", list(c["techniques"]))
    check_settings(c, "log_metrics")
    bound_mlflow_requests(c["logger"])
    models, prepared = root / c["paths"]["models"], root / c["paths"]["prepared"]
    digest = manifest_digest(prepared / MANIFEST)
    ran = read_metrics(models / c["technique"])
    other = provenance.mismatch(ran, provenance.identity(c, digest))
    if other:  # it would sit under this study's run as one of its techniques
        raise ConfigError(
            f"{models / c['technique']} was {other}: log it with the overrides it was trained with "
            "(e.g. experiment=..., seed=...)"
        )
    tracker = tracking.study_tracker(c, root, digest)
    shown = show_config("train", c, stages.training_reads(c), echo=False)  # what the training job read
    tracking.publish_folder(tracker, c, models / c["technique"], prepared, digest, shown)
    tracker.log_comparison(evidence.study_comparison(models, provenance.identity(c, digest)).rows)
    if not tracker.enabled:
        raise DataError("MLflow tracking failed again (see the warning above); nothing was logged")
    print(f"{c['technique']}: logged to MLflow as a child of study run {tracker.parent_run_id}")
    if champion := tracking.update_champion(tracker, c["logger"]["registered_model"]):
        print(champion)


if __name__ == "__main__":
    main()

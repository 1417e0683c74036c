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
from smallvision.errors import ConfigError, DataError
from smallvision.runs import CHECKPOINT, read_metrics


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

    def data_and_network(run_id: str, folder: Path) -> None:  # what the training job logs besides its files
        tracking.log_dataset(tracker, (run_id, tracker.parent_run_id), prepared / MANIFEST, c["data"]["name"], digest)
        if c["logger"]["log_models"] and (folder / CHECKPOINT).exists():
            tracking.log_network(
                tracker,
                run_id,
                folder / CHECKPOINT,
                c["technique"],
                prepared,
                c["data"]["max_image_pixels"],
                c["data"]["max_image_bytes"],
            )

    tracking.log_from_metrics_files(tracker, [models / c["technique"]], tracking.flatten(c), also=data_and_network)
    tracker.log_comparison(evidence.study_comparison(models, provenance.identity(c, digest)).rows)
    if not tracker.enabled:
        raise DataError("MLflow tracking failed again (see the warning above); nothing was logged")
    print(f"{c['technique']}: logged to MLflow as a child of study run {tracker.parent_run_id}")
    if champion := tracking.update_champion(tracker, c["logger"]["registered_model"]):
        print(champion)


if __name__ == "__main__":
    main()

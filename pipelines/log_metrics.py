"""Log a finished technique to MLflow from its files, after tracking failed while it trained (store locked or
server unreachable: training went on and wrote models/<technique>/). Becomes a child run of the same study run,
the run the training job would have made (`tracking.publish_folder`).

    python pipelines/log_metrics.py technique=fine_tune
    python pipelines/log_metrics.py technique=augment preset=quick   # the overrides the training run had
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from smallvision import evidence, provenance, stages, tracking
from smallvision.data.manifest import MANIFEST, manifest_digest
from smallvision.entrypoints import bound_mlflow_requests, friendly_errors, hydra_errors, load_settings, show_config
from smallvision.errors import ConfigError, DataError
from smallvision.runs import read_metrics


@hydra_errors
@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@friendly_errors
def main(cfg: DictConfig) -> None:
    settings, root = load_settings(cfg), Path.cwd()
    technique = settings.technique
    bound_mlflow_requests(settings.logger)
    models, prepared = root / settings.paths.models, root / settings.paths.prepared
    digest = manifest_digest(prepared / MANIFEST)
    ran = read_metrics(models / technique)
    other = provenance.mismatch(ran, provenance.identity(settings, digest))
    if other:  # it would sit under this study's run as one of its techniques
        raise ConfigError(
            f"{models / technique} was {other}: log it with the overrides it was trained with "
            "(e.g. preset=..., seed=...)"
        )
    tracker = tracking.study_tracker(settings, root, digest)
    plain = settings.model_dump()
    shown = show_config("train", plain, stages.training_reads(plain), echo=False)  # what the training job read
    tracking.publish_folder(tracker, settings, models / technique, prepared, digest, shown)
    tracker.log_comparison(evidence.study_comparison(models, provenance.identity(settings, digest)).rows)
    if not tracker.enabled:
        raise DataError("MLflow tracking failed again (see the warning above); nothing was logged")
    print(f"{technique}: logged to MLflow as a child of study run {tracker.parent_run_id}")
    if champion := tracking.update_champion(tracker, settings.logger.registered_model):
        print(champion)


if __name__ == "__main__":
    main()

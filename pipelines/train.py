"""Train one technique (train-baseline, augment, train-modern, feature-extract and fine-tune stages).

python pipelines/train.py technique=augment
python pipelines/train.py -m technique=baseline,augment seed=0,1,2     # a sweep: one job and run each
"""

from pathlib import Path

import hydra
import lightning  # noqa: F401 -- before Hydra sets up logging: conf/hydra/job_logging then routes its lines, once
from omegaconf import DictConfig

from smallvision import stages
from smallvision.distributed import is_rank_zero
from smallvision.entrypoints import (
    bound_mlflow_requests,
    friendly_errors,
    hydra_errors,
    hydra_job,
    load_settings,
    show_config,
)
from smallvision.files import check_writable
from smallvision.job import run_training


@hydra_errors
@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@friendly_errors
def main(cfg: DictConfig) -> None:
    settings = load_settings(cfg, training=True)  # before anything else: the one-line error of a bad value first
    job = hydra_job()
    plain = settings.model_dump()
    shown = show_config(f"train {settings.technique}", plain, stages.training_reads(plain), echo=is_rank_zero())
    bound_mlflow_requests(settings.logger)
    out = job.output_dir if job.sweep_dir else Path.cwd() / settings.paths.models / settings.technique
    check_writable(out, f"paths.models={settings.paths.models}")  # before training, not when its results are saved
    run_training(settings, Path.cwd(), sweep_dir=job.sweep_dir, job_dir=job.output_dir, config_read=shown)


if __name__ == "__main__":
    main()

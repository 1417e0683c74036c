"""Train one technique (train-baseline, augment, feature-extract and fine-tune stages).

    python pipelines/train.py technique=augment
    python pipelines/train.py -m technique=baseline,augment seed=0,1,2     # a sweep: one job and run each
"""

import hydra
from omegaconf import DictConfig

from smallvision.cli import friendly_errors
from smallvision.study import run_training


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@friendly_errors
def main(cfg: DictConfig) -> None:
    run_training(cfg)


if __name__ == "__main__":
    main()

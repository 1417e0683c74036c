"""Find a learning rate for a technique (Lightning's range test) and draw its curve:

python pipelines/lr_find.py technique=fine_tune
python pipelines/lr_find.py technique=feature_extract lr_find.max_lr=0.1
-> models/<technique>/lr_find.json and lr_find.png (the report's "Learning-rate finder" section shows them)
"""

from pathlib import Path

import hydra
import lightning  # noqa: F401 -- before Hydra sets up logging: conf/hydra/job_logging then routes its lines, once
from omegaconf import DictConfig

from smallvision.entrypoints import friendly_errors, hydra_errors, load_settings
from smallvision.lr_find import find_lr
from smallvision.training import Paths
from smallvision.visualize.lr_finder import LR_FIND_PNG


@hydra_errors
@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@friendly_errors
def main(cfg: DictConfig) -> None:
    settings, root = load_settings(cfg, training=True), Path.cwd()
    out = root / settings.paths.models / settings.technique
    result = find_lr(settings, Paths.of(settings.paths, root, out), progress=settings.trainer.progress)
    rate = (
        "none (too few points: raise lr_find.num_training)"
        if result["suggestion"] is None
        else f"{result['suggestion']:.3g}"
    )
    print(
        f"{settings.technique}: suggested learning rate {rate} (configured {result['configured_lr']:g}, "
        f"{result['optimizer']}) -> {out / LR_FIND_PNG}"
    )


if __name__ == "__main__":
    main()

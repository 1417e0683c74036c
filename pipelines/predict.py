"""Predict with a trained technique:

python pipelines/predict.py technique=fine_tune predict.input=path/to/images predict.output=predictions.csv
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from smallvision.entrypoints import friendly_errors
from smallvision.errors import ConfigError
from smallvision.predict import predict, write_csv
from smallvision.runs import CHECKPOINT


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@friendly_errors
def main(cfg: DictConfig) -> None:
    if not cfg.predict.input:
        raise ConfigError("predict.input is not set: predict.input=<an image file or a folder>")
    checkpoint = Path(cfg.paths.models) / cfg.technique / CHECKPOINT
    results = predict(
        checkpoint,
        Path(cfg.predict.input),
        batch_size=cfg.predict.batch_size,
        progress=cfg.trainer.progress,
        max_pixels=cfg.data.max_image_pixels,
    )
    write_csv(results, Path(cfg.predict.output))
    bad = sum(r.error is not None for r in results)
    print(
        f"{len(results) - bad} images predicted with {cfg.technique}, {bad} files could not be read -> {cfg.predict.output}"
    )


if __name__ == "__main__":
    main()

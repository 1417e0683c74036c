"""Predict with a trained technique, or with a model logged to MLflow:

python pipelines/predict.py technique=fine_tune predict.input=path/to/images predict.output=predictions.csv
python pipelines/predict.py predict.model=models:/smallvision-classifier@champion predict.input=path/to/images
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from smallvision.checks import check_settings, one_of
from smallvision.entrypoints import bound_mlflow_requests, friendly_errors, to_dict
from smallvision.errors import ConfigError
from smallvision.networks import spec_resize
from smallvision.predict import check_output, predict, predict_images, write_csv
from smallvision.runs import CHECKPOINT


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@friendly_errors
def main(cfg: DictConfig) -> None:
    c = to_dict(cfg)
    one_of(c["technique"], "technique", list(c["techniques"]))
    check_settings(c, "predict")
    if not cfg.predict.input:
        raise ConfigError("predict.input is not set: predict.input=<an image file or a folder>")
    if not cfg.predict.output:
        raise ConfigError("predict.output is not set: predict.output=<a CSV file to write>")
    check_output(Path(cfg.predict.output))
    options = {
        "target": Path(cfg.predict.input),
        "batch_size": cfg.predict.batch_size,
        "progress": cfg.trainer.progress,
        "max_pixels": cfg.data.max_image_pixels,
        "max_bytes": cfg.data.max_image_bytes,
    }
    if cfg.predict.model:
        from smallvision import tracking

        bound_mlflow_requests(to_dict(cfg.logger))
        uri = tracking.resolve_tracking_uri(cfg.logger.tracking_uri, Path.cwd())
        classifier, meta = tracking.load_classifier(str(cfg.predict.model), uri)
        results = predict_images(classifier, meta["classes"], spec_resize(meta), **options)
        used = f"{cfg.predict.model} ({meta['technique']})"
    else:
        results = predict(Path(cfg.paths.models) / cfg.technique / CHECKPOINT, **options)
        used = cfg.technique
    write_csv(results, Path(cfg.predict.output))
    bad = sum(r.error is not None for r in results)
    print(f"{len(results) - bad} images predicted with {used}, {bad} files could not be read -> {cfg.predict.output}")


if __name__ == "__main__":
    main()

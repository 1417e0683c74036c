"""Predict with a trained technique, or with a model logged to MLflow:

python pipelines/predict.py technique=fine_tune predict.input=path/to/images predict.output=predictions.csv
python pipelines/predict.py predict.model=models:/smallvision-classifier@champion predict.input=path/to/images
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from smallvision.entrypoints import bound_mlflow_requests, friendly_errors, hydra_errors, load_settings
from smallvision.errors import ConfigError
from smallvision.networks import spec_resize
from smallvision.predict import check_output, predict, predict_images, write_csv
from smallvision.runs import CHECKPOINT


@hydra_errors
@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@friendly_errors
def main(cfg: DictConfig) -> None:
    settings = load_settings(cfg)
    opts = settings.predict
    if not opts.input:
        raise ConfigError("predict.input is not set: predict.input=<an image file or a folder>")
    if not opts.output:
        raise ConfigError("predict.output is not set: predict.output=<a CSV file to write>")
    check_output(Path(opts.output))
    options = {
        "target": Path(opts.input),
        "batch_size": opts.batch_size,
        "progress": settings.trainer.progress,
        "limits": settings.data.image_limits,
    }
    if opts.model:
        from smallvision import tracking

        bound_mlflow_requests(settings.logger)
        uri = tracking.resolve_tracking_uri(settings.logger.tracking_uri, Path.cwd())
        classifier, meta = tracking.load_classifier(opts.model, uri)
        results = predict_images(classifier, meta["classes"], spec_resize(meta), **options)
        used = f"{opts.model} ({meta['technique']})"
    else:
        results = predict(Path(settings.paths.models) / settings.technique / CHECKPOINT, **options)
        used = settings.technique
    write_csv(results, Path(opts.output))
    bad = sum(r.error is not None for r in results)
    print(f"{len(results) - bad} images predicted with {used}, {bad} files could not be read -> {opts.output}")


if __name__ == "__main__":
    main()

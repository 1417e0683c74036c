"""Trained networks in MLflow: each technique's network logged as a model (PyTorch flavour) on its run, the study's
best run by validation accuracy registered under alias `champion`, and a logged model loaded back for `predict`.

A logged model is an `ImageClassifier` exported with torch.export (MLflow's "pt2" format, loadable without this
project's code): uint8 RGB images (N, size, size, 3) in, logits out. Its preprocessing (size, resize, classes; the
normalisation is inside) is the model's metadata under "smallvision". Logging a model never stops training: a
failure is one warning and the run goes on.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.store.tracking import SEARCH_MAX_RESULTS_DEFAULT
from mlflow.tracking._tracking_service.utils import (
    _use_tracking_uri,  # private: MLflow has no public scoped tracking URI (log_model and models:/ URIs use the global)
)
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from smallvision.errors import ConfigError
from smallvision.runs import study_order
from smallvision.tracking.store import reason, redact, store_problem
from smallvision.tracking.study_runs import ROLE_TAG, ROLE_TECHNIQUE
from smallvision.tracking.tracker import StudyTracker

if TYPE_CHECKING:  # torch and the networks are imported where a model is logged or loaded: tracking stays light
    import numpy as np
    import torch

    from smallvision.data.images import ImageLimits, Resize

log = logging.getLogger(__name__)

CHAMPION = "champion"
METADATA_KEY = "smallvision"
SELECTION_METRIC = "best_val_accuracy"  # the champion is chosen on validation, never on test
TIE_BREAK_METRIC = "best_val_loss"  # of equal accuracies, the lower validation loss at that epoch
OUTPUT_TAG = "smallvision.output_dir"  # the folder a run's files are in: a rerun into it replaces the older run


def preprocessing(spec: dict, technique: str) -> dict[str, Any]:
    """What a user of the logged model needs to feed it (stored as the model's metadata); `resize` is
    `smallvision.data.images.Resize` as a dict (squash: the whole photo, aspect not kept; crop: the shorter side to
    size / crop_pct, then the centre square)."""
    from smallvision.networks import spec_resize

    return {
        "technique": technique,
        "classes": list(spec["classes"]),
        "image_size": int(spec["image_size"]),
        "resize": spec_resize(spec).to_dict(),
        "mean": list(spec["mean"]),
        "std": list(spec["std"]),
        "input": "uint8 RGB images (N, image_size, image_size, 3); the mean/std normalisation is inside the model",
        "output": "logits: one (sigmoid) for two classes, else one per class (softmax)",
    }


def example_images(prepared: Path, size: int | Resize, limits: ImageLimits, count: int = 2) -> np.ndarray:
    """`count` training images, one per class, as the model's input example (a batch of 2 or more keeps the
    exported batch dimension dynamic)."""
    import numpy as np

    from smallvision.data.images import load_resized
    from smallvision.data.manifest import load_manifest

    records, _ = load_manifest(prepared)
    first = {}
    for record in records:
        if record.split == "train":
            first.setdefault(record.label, record)
    chosen = list(first.values())[:count]
    chosen += [r for r in records if r.split == "train" and r not in chosen][: count - len(chosen)]
    return np.stack([load_resized(r.file, size, limits) for r in chosen])


def log_network(
    tracker: StudyTracker,
    run_id: str | None,
    checkpoint: Path,
    technique: str,
    prepared: Path,
    limits: ImageLimits,
) -> str | None:
    """Log the network in `checkpoint` as an MLflow model of the run; return its model id (None when tracking is
    off or the logging failed: one warning, tracking stays on so the run still gets its final status)."""
    if run_id is None or not tracker.enabled:
        return None
    try:
        return _log_network(tracker, run_id, checkpoint, technique, prepared, limits)
    except Exception as err:  # an export or store failure must not stop the stage
        log.warning(
            "MLflow: the %s network was not logged as a model (%s); its checkpoint is %s",
            technique,
            reason(err),
            checkpoint,
        )
        log.debug("model logging failure details", exc_info=err)
        return None


def _log_network(
    tracker: StudyTracker,
    run_id: str,
    checkpoint: Path,
    technique: str,
    prepared: Path,
    limits: ImageLimits,
) -> str:
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    from smallvision.networks import ImageClassifier, load_checkpoint, spec_resize

    net, spec = load_checkpoint(checkpoint, pretrained_base=False)
    model = ImageClassifier(net, spec["mean"], spec["std"]).eval()
    examples = example_images(prepared, spec_resize(spec), limits)
    with torch.no_grad():
        signature = infer_signature(examples, model(torch.from_numpy(examples)).numpy())
    # the logged model goes to the run's experiment only when created there first (else: the active experiment)
    logged = tracker.client.create_logged_model(
        experiment_id=tracker.runs.experiment(), name=technique, source_run_id=run_id, tags={"technique": technique}
    )
    with _use_tracking_uri(tracker.tracking_uri):  # log_model writes through the global tracking URI
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            model_id=logged.model_id,
            run_id=run_id,
            signature=signature,
            input_example=examples,
            metadata={METADATA_KEY: preprocessing(spec, technique)},
            # explicit requirements: inferring them loads the model in a subprocess (~15 s)
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"],
            # MLflow would load the model back and predict its example (a third of the cost), only to warn on
            # failure; the tests load and check every logged model instead
            validate_serving_input=False,
        )
    return info.model_id


# -- the champion ----------------------------------------------------------------------------


def champion_run(children: Sequence[Run]) -> Run | None:
    """The study's best run on validation: among the newest technique run per output folder (a technique
    retrained into models/<technique>/ replaces its older run, as its files do; each job of a sweep has its own
    folder), those that finished and hold a model, the one with the highest validation accuracy
    (`best_val_accuracy`); of equal ones the lower validation loss at that epoch (`best_val_loss`), then the later
    technique in the study's order (the later technique is the book's answer to the earlier one's limits), then
    the later run. Test accuracy plays no part."""
    newest: dict[str, Run] = {}
    for run in sorted(children, key=lambda r: r.info.start_time, reverse=True):
        tags = run.data.tags
        if tags.get(ROLE_TAG) == ROLE_TECHNIQUE:
            newest.setdefault(tags.get(OUTPUT_TAG) or tags.get("technique", run.info.run_id), run)
    candidates = [
        run
        for run in newest.values()
        if run.info.status == "FINISHED"
        and SELECTION_METRIC in run.data.metrics
        and run.outputs is not None
        and run.outputs.model_outputs
    ]

    def rank(run: Run) -> tuple:
        metrics = run.data.metrics
        return (
            metrics[SELECTION_METRIC],
            -metrics.get(TIE_BREAK_METRIC, math.inf),  # a run without it loses the tie
            study_order(run.data.tags.get("technique", "")),
            run.info.start_time,
        )

    return max(candidates, key=rank, default=None)


def update_champion(tracker: StudyTracker, registered_model: str | None) -> str | None:
    """Point `registered_model@champion` at the study's best run (`champion_run`), registering its model as a new
    version when it has none yet. Returns a line that names it, or None (no registry name, tracking off, no
    candidate)."""
    if not registered_model or not tracker.enabled or tracker.parent_run_id is None:
        return None
    champion = tracker.guarded(lambda: _update_champion(tracker, registered_model))
    if champion is None:
        return None
    version, run = champion
    return (
        f"MLflow: {registered_model}@{CHAMPION} is version {version}, {run.data.tags.get('technique')} "
        f"(validation accuracy {run.data.metrics[SELECTION_METRIC]:.4f}, run {run.info.run_id})"
    )


def _update_champion(tracker: StudyTracker, name: str) -> tuple[str, Run] | None:
    import mlflow

    client = tracker.client
    children = client.search_runs(
        [tracker.runs.experiment()],
        filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{tracker.parent_run_id}'",
        max_results=SEARCH_MAX_RESULTS_DEFAULT,
    )
    best = champion_run(children)
    if best is None:
        return None
    run_id, model_id = best.info.run_id, best.outputs.model_outputs[-1].model_id
    try:
        client.create_registered_model(
            name, description="The smallvision study's best technique by validation accuracy: alias champion."
        )
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"models:/{model_id}"  # what identifies a version's model (a SQLite store does not keep its model_id)
    versions = client.search_model_versions(f"run_id = '{run_id}'")
    version = next((v.version for v in versions if v.name == name and v.source == source), None)
    if version is None:
        tags = {key: best.data.tags[key] for key in ("technique", "seed", "dataset") if key in best.data.tags}
        tags[SELECTION_METRIC] = str(best.data.metrics[SELECTION_METRIC])
        # mlflow.register_model, not the client's create_model_version: it also links the logged model to the
        # version (its page then names it); it goes through the global URIs
        with _use_tracking_uri(tracker.tracking_uri):
            version = mlflow.register_model(source, name, await_registration_for=0, tags=tags).version
    client.set_registered_model_alias(name, CHAMPION, version)
    return str(version), best


# -- loading ---------------------------------------------------------------------------------


def load_classifier(model_uri: str, tracking_uri: str) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict]:
    """A logged smallvision model (`models:/<name>@champion`, `models:/m-...`, `runs:/<id>/model`) and its
    preprocessing metadata. Raises ConfigError when it cannot be found or is not a smallvision model."""
    import mlflow.pytorch
    from mlflow.models import get_model_info

    where = f"in the MLflow store at {redact(tracking_uri)}"
    if problem := store_problem(tracking_uri):
        raise ConfigError(f"predict.model={model_uri!r} cannot be loaded: {problem}")
    with _use_tracking_uri(tracking_uri):
        try:
            info = get_model_info(model_uri)
        except (MlflowException, OSError) as err:
            raise ConfigError(f"predict.model={model_uri!r} cannot be loaded {where}: {reason(err)}") from None
        meta = (info.metadata or {}).get(METADATA_KEY)
        if not meta:
            raise ConfigError(
                f"predict.model={model_uri!r} is not a smallvision model (no preprocessing in its metadata) {where}"
            )
        return mlflow.pytorch.load_model(model_uri), meta

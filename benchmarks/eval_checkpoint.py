"""Test a technique's trained checkpoint again on its project's test split, with any trainer config: the same
module, data module and Lightning test step training ends with. gpu_check.py uses it to check that a
`trainer=ddp` run's test metrics are exact: one GPU must count the same test images correct, image for image.

    python benchmarks/eval_checkpoint.py PROJECT TECHNIQUE [trainer overrides, e.g. trainer=gpu trainer.precision=32-true]

It exits 1 when its counts or any prediction differ from what the run wrote.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from smallvision.data.cache import image_array
from smallvision.data.datamodule import ArrayDataModule, SplitArrays
from smallvision.data.manifest import MANIFEST, SPLITS, load_manifest, manifest_digest
from smallvision.entrypoints import load_settings
from smallvision.modules.classifier import ClassifierModule, ImageInput
from smallvision.networks import load_checkpoint
from smallvision.runs import CHECKPOINT, METRICS, PREDICTION_COLUMNS, PREDICTIONS, read_rows
from smallvision.schema import Settings
from smallvision.trainer import expected_notices_hidden, make_trainer

from common import project_config


def evaluate(project: Path, technique: str, cfg: Settings) -> dict:
    """Test `project`/models/`technique`/best.ckpt on the project's test split with `cfg`'s trainer: the number of
    test images, how many were correct, and each test image's predicted class, in split order."""
    prepared = project / cfg.paths.prepared
    net, spec = load_checkpoint(project / cfg.paths.models / technique / CHECKPOINT)
    records, classes = load_manifest(prepared)
    images = image_array(
        [r.file for r in records],
        spec["image_size"],
        project / cfg.paths.cache,
        manifest_digest(prepared / MANIFEST),
        cfg.data.workers,
        False,
        cfg.data.image_limits,
    )
    labels = np.array([classes.index(r.label) for r in records])
    rows = {s: np.array([i for i, r in enumerate(records) if r.split == s]) for s in SPLITS}
    image_input = ImageInput(tuple(spec["mean"]), tuple(spec["std"]), None, cfg.trainer.channels_last)
    tech = cfg.techniques[technique]
    module = ClassifierModule(net, len(classes), tech.optimizer, image_input, spec=spec)
    batch = tech.eval_batch_size
    data = ArrayDataModule(SplitArrays(images, labels, rows, classes), batch, 0, eval_batch_size=batch)
    with tempfile.TemporaryDirectory() as out, expected_notices_hidden():
        make_trainer(cfg.trainer.model_copy(update={"progress": False}), 1, Path(out), False, []).test(
            module, datamodule=data, verbose=False
        )
    results = module.test_results
    predicted = [classes[int(k)] for k in results["samples"]["pred"]]
    return {"test_images": int(results["n"]), "test_correct": int(results["correct"]), "predicted": predicted}


def recorded(project: Path, technique: str) -> dict:
    """What the technique's run wrote: the same fields as `evaluate`, from metrics.json and test_predictions.csv."""
    out = project / "models" / technique
    metrics = json.loads((out / METRICS).read_text())
    predicted = [row["predicted"] for row in read_rows(out / PREDICTIONS, PREDICTION_COLUMNS)]
    return {"test_images": metrics["test_images"], "test_correct": metrics["test_correct"], "predicted": predicted}


def project_settings(project: Path, *trainer_overrides: str) -> Settings:
    """The project's params.yaml, its `trainer` replaced by conf/'s with `trainer_overrides` (e.g. trainer=gpu)."""
    cfg = yaml.safe_load((project / "params.yaml").read_text())
    if trainer_overrides:
        cfg["trainer"] = project_config(*trainer_overrides).trainer.model_dump()
    return load_settings(cfg)


def main() -> None:
    project, technique, overrides = Path(sys.argv[1]).resolve(), sys.argv[2], sys.argv[3:]
    got, wrote = evaluate(project, technique, project_settings(project, *overrides)), recorded(project, technique)
    same = got == wrote
    print(json.dumps({"technique": technique, "evaluated": got, "recorded": wrote, "equal": same}))
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()

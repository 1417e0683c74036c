"""Predict with a trained technique: an image file or a folder of images -> CSV of class and probability.

Every file under the folder gets a row: bad files (unreadable, not an image, hidden, a FIFO or device) are
reported in its `error` column (and counted), never fatal, never left out.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from smallvision.data.images import (
    BadImageError,
    ImageLimits,
    Resize,
    is_image_name,
    load_resized,
)
from smallvision.errors import ConfigError, DataError
from smallvision.files import atomic_write, check_writable, nearest_existing, special_file_kind
from smallvision.networks import ImageClassifier, class_probabilities, load_checkpoint, spec_resize


@dataclass
class Prediction:
    path: str
    predicted: str | None
    probability: float | None
    error: str | None = None


def image_files(target: Path) -> list[Path]:
    """The file (or every file under a folder, recursively, sorted; FIFOs, sockets and devices too) to predict."""
    target = Path(target)
    if target.is_file():
        return [target]
    if target.is_dir():
        return sorted(p for p in target.rglob("*") if not p.is_dir())
    what = special_file_kind(target) or "does not exist"
    raise DataError(f"predict.input={str(target)!r} is neither an image file nor a folder ({what})")


def _unusable(path: Path) -> str | None:
    """Why `path` is not predicted (the row's error), or None."""
    kind = special_file_kind(path)
    if kind or not path.is_file():
        return f"not a regular file ({kind or 'a broken link'})"
    if path.name.startswith("."):
        return "hidden file"
    if not is_image_name(path.name):
        return "not an image"
    return None


def check_output(output: Path) -> None:
    """Refuse an output path that no CSV can be written to, before anything is predicted."""
    output = Path(output)
    if output.is_dir():
        raise ConfigError(
            f"predict.output={str(output)!r} is a folder; give a file name, e.g. "
            f"predict.output={(output / 'predictions.csv').as_posix()}"
        )
    kind = special_file_kind(output)
    if kind:
        raise ConfigError(f"predict.output={str(output)!r} is {kind}; give the name of a regular file")
    if is_image_name(output.name):  # writing the CSV there would replace an image, perhaps one being predicted
        raise ConfigError(f"predict.output={str(output)!r} names an image file; give a .csv file name")
    folder = nearest_existing(output.parent)
    if not folder.is_dir():
        raise ConfigError(f"predict.output={str(output)!r} cannot be written: {folder} is a file, not a folder")
    check_writable(folder, f"predict.output={str(output)!r}")


@torch.inference_mode()
def probabilities(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """(N, classes) probabilities from the network's logits (sigmoid for one logit, softmax otherwise)."""
    return class_probabilities(net(x))


def predict(
    checkpoint: Path,
    target: Path,
    batch_size: int,
    progress: bool,
    limits: ImageLimits,
) -> list[Prediction]:
    """Predict `target` (an image or a folder) with the network in a checkpoint, `batch_size` images per forward
    pass, reading images under `limits`."""
    net, spec = load_checkpoint(checkpoint, pretrained_base=False)
    classifier = ImageClassifier(net, spec["mean"], spec["std"]).eval()
    return predict_images(classifier, spec["classes"], spec_resize(spec), target, batch_size, progress, limits)


def predict_images(
    classifier: Callable[[torch.Tensor], torch.Tensor],
    classes: list[str],
    size: int | Resize,
    target: Path,
    batch_size: int,
    progress: bool,
    limits: ImageLimits,
) -> list[Prediction]:
    """Predict `target` with `classifier` (an `ImageClassifier`, or one loaded from MLflow): uint8 images
    (N, size, size, 3) in, logits out. `size` is a `Resize`, as the network was trained (a plain size is squashed)."""
    results: list[Prediction] = []
    pending: list[tuple[Path, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        probs = probabilities(classifier, torch.from_numpy(np.stack([a for _, a in pending])))
        for (path, _), p in zip(pending, probs):
            k = int(p.argmax())
            results.append(Prediction(str(path), classes[k], float(p[k])))
        pending.clear()

    for path in tqdm(image_files(target), desc="predicting", unit="img", disable=not progress):
        problem = _unusable(path)
        if problem:
            results.append(Prediction(str(path), None, None, problem))
            continue
        try:
            pending.append((path, load_resized(path, size, limits)))
        except BadImageError as err:
            results.append(Prediction(str(path), None, None, err.reason))
        if len(pending) >= batch_size:
            flush()
    flush()
    return sorted(results, key=lambda r: r.path)


def write_csv(predictions: list[Prediction], output: Path) -> None:
    """The CSV, written atomically: an interrupted run never leaves half of one."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["path", "predicted", "probability", "error"])
            for p in predictions:
                probability = "" if p.probability is None else f"{p.probability:.6f}"
                w.writerow([p.path, p.predicted or "", probability, p.error or ""])

    atomic_write(output, write)

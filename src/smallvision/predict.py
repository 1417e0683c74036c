"""Predict with a trained technique: an image file or a folder of images -> CSV of class and probability.

Bad files are reported in the CSV (and counted), never fatal.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from smallvision.data.images import DEFAULT_MAX_PIXELS, BadImageError, is_image_name, load_resized
from smallvision.data.preprocess import network_input
from smallvision.errors import DataError
from smallvision.networks import class_probabilities, load_checkpoint, spec_resize


@dataclass
class Prediction:
    path: str
    predicted: str | None
    probability: float | None
    error: str | None = None


def image_files(target: Path) -> list[Path]:
    """The image (or the images under a folder, recursively, sorted) to predict."""
    target = Path(target)
    if target.is_file():
        return [target]
    if target.is_dir():
        return sorted(p for p in target.rglob("*") if p.is_file() and not p.name.startswith("."))
    raise DataError(f"predict.input={str(target)!r} is neither an image file nor a folder")


@torch.inference_mode()
def probabilities(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, classes) probabilities from the network's logits (sigmoid for one logit, softmax otherwise)."""
    return class_probabilities(net(x))


def predict(
    checkpoint: Path,
    target: Path,
    batch_size: int = 32,
    progress: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> list[Prediction]:
    net, spec = load_checkpoint(checkpoint, pretrained_base=False)
    net.eval()
    classes, resize = spec["classes"], spec_resize(spec)  # the photos resized as the network was trained
    results: list[Prediction] = []
    pending: list[tuple[Path, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        probs = probabilities(net, network_input(np.stack([a for _, a in pending]), spec["mean"], spec["std"]))
        for (path, _), p in zip(pending, probs):
            k = int(p.argmax())
            results.append(Prediction(str(path), classes[k], float(p[k])))
        pending.clear()

    for path in tqdm(image_files(target), desc="predicting", unit="img", disable=not progress):
        if not is_image_name(path.name):
            results.append(Prediction(str(path), None, None, "not an image"))
            continue
        try:
            pending.append((path, load_resized(path, resize, max_pixels)))
        except BadImageError as err:
            results.append(Prediction(str(path), None, None, err.reason))
        if len(pending) >= batch_size:
            flush()
    flush()
    return sorted(results, key=lambda r: r.path)


def write_csv(predictions: list[Prediction], output: Path) -> None:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "predicted", "probability", "error"])
        for p in predictions:
            w.writerow(
                [p.path, p.predicted or "", "" if p.probability is None else f"{p.probability:.6f}", p.error or ""]
            )

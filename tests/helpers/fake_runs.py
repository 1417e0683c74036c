"""Made-up results: right/wrong per test image of two classifiers with a given 2 x 2 table, a finished run's folder
with its predictions and provenance, and a seed sweep's metrics rows."""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml

from helpers.study import config

CLASSES = ("cat", "dog")
MANIFEST = "0123456789ab"
BOOK = {"baseline": 0.71, "augment": 0.82, "feature_extract": 0.90, "fine_tune": 0.97}  # the book's accuracies
# shuffled on purpose: the table is in the study's order, each technique's values in the order of its seeds
SEED_ROWS = [
    {"technique": "augment", "seed": 2, "test_accuracy": 0.82},
    {"technique": "baseline", "seed": 0, "test_accuracy": 0.70},
    {"technique": "augment", "seed": 0, "test_accuracy": 0.80},
    {"technique": "baseline", "seed": 1, "test_accuracy": 0.62},
    {"technique": "augment", "seed": 1, "test_accuracy": 0.84},
    {"technique": "baseline", "seed": 2, "test_accuracy": 0.66},
]


def table(both: int, only_first: int, only_second: int, neither: int) -> tuple[list[bool], list[bool]]:
    """Right/wrong per image of two classifiers with the given 2 x 2 table, the discordant images spread out."""
    pairs = [(True, True)] * both + [(True, False)] * only_first + [(False, True)] * only_second
    pairs += [(False, False)] * neither
    random.Random(0).shuffle(pairs)
    return [a for a, _ in pairs], [b for _, b in pairs]


def fake_run(folder: Path, technique: str, correct: list[bool], order: int = 0, **metrics) -> Path:
    """A finished run's folder: test_predictions.csv (image i: class i % 2, predicted right where `correct[i]`;
    rows shuffled by `order`, since pairing is by path) and metrics.json with its provenance."""
    folder.mkdir(parents=True)
    rows = []
    for i, right in enumerate(correct):
        actual = CLASSES[i % 2]
        rows.append(f"img_{i:03d}.jpg,{actual},{actual if right else CLASSES[1 - i % 2]},0.9")
    random.Random(order).shuffle(rows)
    (folder / "test_predictions.csv").write_text("path,actual,predicted,probability\n" + "\n".join(rows) + "\n")
    saved = {
        "technique": technique,
        "test_accuracy": sum(correct) / len(correct),
        "test_images": len(correct),
        "preset": "quick",
        "seed": 42,
        "manifest": MANIFEST,
        **metrics,
    }
    (folder / "metrics.json").write_text(json.dumps(saved))
    return folder


LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
SWEEP = "technique=feature_extract,fine_tune", "backbone=" + ",".join(LITES), "seed=0,1"
PARAMETERS = {"efficientnet_lite0": 3.7e6, "efficientnet_lite1": 4.5e6, "efficientnet_lite2": 5.2e6}


def backbone_job(technique: str, backbone: str, seed: int) -> dict:
    """A metrics.json as training writes it, with made-up numbers that differ per backbone, technique and seed."""
    k = LITES.index(backbone)
    accuracy = 0.97 + 0.005 * k + (0.004 if technique == "fine_tune" else 0.0) + 0.001 * seed
    return {
        "technique": technique,
        "backbone": backbone,
        "seed": seed,
        "test_accuracy": accuracy,
        "test_images": 996,
        "seconds_per_epoch": (30.0 if technique == "fine_tune" else 1.0) * (1 + k),
        "epochs_run": 10,
        "parameters": PARAMETERS[backbone],
        "trainable_parameters": 0.3e6 if technique == "feature_extract" else 1.3e6,
    }


def backbone_sweep(tmp_path: Path) -> Path:
    """A finished backbone sweep's folder: its jobs' metrics.json and its multirun.yaml, as Hydra and training
    leave them."""
    sweep = tmp_path / "multirun" / "2026-12-06" / "08-00-00"
    jobs = [(t, b, s) for t in ("feature_extract", "fine_tune") for b in LITES for s in (0, 1)]
    for number, job in enumerate(jobs):
        (sweep / str(number)).mkdir(parents=True)
        (sweep / str(number) / "metrics.json").write_text(json.dumps(backbone_job(*job)))
    visualize = config("visualize.dpi=30").visualize.model_dump()  # as a sweep writes it: the whole section
    overrides = {"hydra": {"overrides": {"task": [*SWEEP, "data=synthetic"]}}, "visualize": visualize}
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(overrides))
    return sweep

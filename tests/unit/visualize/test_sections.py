"""The report's sections (smallvision.visualize.sections) on a report built by hand: what each section loads and
draws. The whole stage on a tiny study: e2e/test_report_render.py."""

from __future__ import annotations

import csv

import numpy as np
import torch
from helpers.study import LIMITS, config
from PIL import Image

from smallvision.data.images import load_resized
from smallvision.data.manifest import Record
from smallvision.networks import input_resize
from smallvision.runs import PREDICTION_COLUMNS, PREDICTIONS
from smallvision.visualize import sections

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def wide_photo(path) -> None:
    """A 3:1 photo, red | green | blue in thirds: a centre crop shows green alone, a squash all three."""
    pixels = np.zeros((40, 120, 3), np.uint8)
    for k, colour in enumerate((RED, GREEN, BLUE)):
        pixels[:, 40 * k : 40 * (k + 1)] = colour
    Image.fromarray(pixels).save(path)


def test_the_mistakes_gallery_shows_a_transfer_photo_as_its_network_gets_it(tmp_path):
    cfg = config("visualize.mistakes.technique=feature_extract", "visualize.mistakes.image_size=32")
    photo = tmp_path / "cat" / "wide.png"
    photo.parent.mkdir()
    wide_photo(photo)
    models = tmp_path / "models" / "feature_extract"
    models.mkdir(parents=True)
    with open(models / PREDICTIONS, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(PREDICTION_COLUMNS)
        writer.writerow(["cat/wide.png", "cat", "dog", "0.9"])
    loaded = []

    def load(path, geometry):
        loaded.append((geometry, load_resized(path, geometry, LIMITS)))
        return loaded[-1][1]

    report = sections.Report(
        visualize=cfg.visualize,
        augmentation=None,
        image_sizes={name: input_resize(tech, cfg.backbone) for name, tech in cfg.techniques.items()},
        folder=tmp_path / "reports",
        records=[Record(photo, "cat/wide.png", "cat", 0, "test", "0" * 64)],
        classes=["cat", "dog"],
        load=load,
        trained=[sections.Technique("feature_extract", models)],
        nets=sections.Nets(torch.device("cpu")),
        notes=[],
    )
    sec = sections.mistakes_section(report)

    assert [f.path.name for f in sec.figures] == ["mistakes_feature_extract.png"]
    ((geometry, image),) = loaded
    assert geometry.size == 32 and geometry.mode == "crop"  # EfficientNet-Lite0's: as its base was trained
    assert image.shape == (32, 32, 3)
    # the centre third alone: no red or blue edge, as a squashed photo would have
    assert (image[..., 1] > 200).all() and (image[..., 0] < 60).all() and (image[..., 2] < 60).all()

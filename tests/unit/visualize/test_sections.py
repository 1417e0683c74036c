"""The report's sections (smallvision.visualize.sections) on a report built by hand: what each section loads and
draws. The whole stage on a tiny study: e2e/test_report_render.py."""

from __future__ import annotations

import csv
from unittest.mock import patch

import numpy as np
import torch
from helpers.study import LIMITS, config
from PIL import Image

from smallvision.data.augmentation import AffineConfig
from smallvision.data.images import load_resized
from smallvision.data.manifest import Record
from smallvision.networks import input_resize
from smallvision.runs import PREDICTION_COLUMNS, PREDICTIONS
from smallvision.visualize import sections
from smallvision.visualize.augmentation_preview import augmented_copies

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
        own_augmentations={},
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


def test_the_augmentation_preview_shows_the_groups_transforms_then_moderns_own_on_the_same_image(tmp_path):
    """The `augmentation` group's preview at augment's size, then a second one labelled modern, drawn with
    techniques.modern.augmentation (the 2nd edition's flip, rotation and zoom) at modern's size."""
    cfg = config("preset=smoke", "visualize.augmentation_preview.count=3")
    photo = tmp_path / "cat" / "wide.png"
    photo.parent.mkdir()
    wide_photo(photo)
    drawn = []  # (image shape, transforms) per preview, as the section asked for them

    def copies(image, aug_cfg, count, seed):
        drawn.append((image.shape, aug_cfg))
        return augmented_copies(image, aug_cfg, count, seed)

    group, modern = AffineConfig.of(cfg.augmentation), AffineConfig.of(cfg.techniques["modern"].augmentation)
    report = sections.Report(
        visualize=cfg.visualize,
        augmentation=group,
        own_augmentations={"modern": modern},
        image_sizes={name: input_resize(tech, cfg.backbone) for name, tech in cfg.techniques.items()},
        folder=tmp_path / "reports",
        records=[Record(photo, "cat/wide.png", "cat", 0, "train", "0" * 64)],
        classes=["cat", "dog"],
        load=lambda path, geometry: load_resized(path, geometry, LIMITS),
        trained=[],
        nets=sections.Nets(torch.device("cpu")),
        notes=[],
    )
    with patch.object(sections.augmentation_preview, "augmented_copies", copies):
        sec = sections.augmentation_section(report)

    assert [f.path.name for f in sec.figures] == ["augmentation_preview.png", "augmentation_preview_modern.png"]
    assert drawn == [((64, 64, 3), group), ((64, 64, 3), modern)]  # the smoke preset's sizes; the same image count
    assert (modern.rotation_range, modern.zoom_range, modern.shear_range, modern.fill_mode) == (36, 0.2, 0.0, "reflect")
    assert modern != group
    assert sec.figures[1].caption == "cat/wide.png at 64 px (squash) and 3 augmentations with modern's own transforms."
    assert all(f.path.is_file() for f in sec.figures)

"""The synthetic source: deterministic, one folder per class, the class carried by the shape and not the colour."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.study import config
from PIL import Image

from smallvision.data.discovery import discover
from smallvision.data.sources import fetch_source
from smallvision.data.synthetic import SHAPES, generate
from smallvision.errors import ConfigError

TWO = ("circle", "square")


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


def test_layout_size_and_count(tmp_path):
    generate(tmp_path / "g", classes=("circle", "square", "triangle"), per_class=5, image_size=40, seed=0)
    found = discover(tmp_path / "g")
    assert found.layout == "class_folders" and found.classes == ["circle", "square", "triangle"]
    assert len(found.candidates) == 15 and not found.dropped
    image = Image.open(tmp_path / "g" / "triangle" / "triangle_0004.jpg")
    assert image.format == "JPEG" and image.size == (40, 40) and image.mode == "RGB"


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    generate(tmp_path / "a", classes=TWO, per_class=4, image_size=64, seed=1)
    generate(tmp_path / "b", classes=TWO, per_class=4, image_size=64, seed=1)
    generate(tmp_path / "c", classes=TWO, per_class=4, image_size=64, seed=2)
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert files(tmp_path / "a").keys() == files(tmp_path / "c").keys() != set()
    assert all(files(tmp_path / "a")[k] != v for k, v in files(tmp_path / "c").items())


def test_images_vary_and_colour_does_not_give_the_class_away(tmp_path):
    generate(tmp_path / "g", classes=TWO, per_class=60, image_size=32, seed=0)
    features, labels = [], []
    for label, name in enumerate(("circle", "square")):
        for path in sorted((tmp_path / "g" / name).glob("*.jpg")):
            pixels = np.asarray(Image.open(path), dtype=np.float32)
            features.append(np.concatenate([pixels.mean((0, 1)), pixels.std((0, 1))]))
            labels.append(label)
    features, labels = np.array(features), np.array(labels)
    assert features[:, :3].std(0).min() > 20  # colours differ a lot from image to image
    # nearest class centroid on colour statistics, fitted on even images, scored on odd ones: near chance
    train, test = np.arange(len(labels)) % 2 == 0, np.arange(len(labels)) % 2 == 1
    centroids = np.stack([features[train & (labels == k)].mean(0) for k in (0, 1)])
    guess = np.linalg.norm(features[test][:, None] - centroids[None], axis=2).argmin(1)
    assert (guess == labels[test]).mean() < 0.7


def test_bad_synthetic_config():
    with pytest.raises(ConfigError, match=r"data.synthetic.classes=\['circle', 'blob'\] must be two or more distinct"):
        config("data.synthetic.classes=[circle,blob]")
    with pytest.raises(ConfigError, match="two or more"):
        config("data.synthetic.classes=[circle]")
    with pytest.raises(ConfigError, match="data.synthetic.per_class=0"):
        config("data.synthetic.per_class=0")
    assert {"circle", "square", "triangle"} <= set(SHAPES)


def test_fetch_source_synthetic(tmp_path):
    raw = tmp_path / "data" / "raw"
    data = config("data.synthetic.classes=[circle,star]", "data.synthetic.per_class=3", "data.synthetic.image_size=24")
    fetch_source(
        "synthetic",
        raw,
        sha256=None,
        size=None,
        connect_timeout_s=10,
        max_extract_bytes=4e9,
        max_tar_header_bytes=1e6,
        max_download_bytes=1.2e9,
        min_download_rate=None,
        synthetic=data.data.synthetic,
        retries=3,
        progress=False,
    )
    assert sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*.jpg"))[:2] == [
        "circle/circle_0000.jpg",
        "circle/circle_0001.jpg",
    ]
    assert len(list(raw.rglob("*.jpg"))) == 6
    with pytest.raises(ConfigError, match=r"data.synthetic.colour='red' is not a setting"):
        config("+data.synthetic.colour=red")

"""The audit stage and the split's exclusion list run as the entry scripts run them: planted copies and flipped
labels found, excluded images left out with their reasons, a bad list refused in one line."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from helpers.entry import assert_one_line_error, run_stage
from helpers.study import LIMITS
from PIL import Image, ImageDraw

from smallvision import audit, features
from smallvision.data.manifest import MANIFEST, MANIFEST_COLUMNS, SPLITS, load_manifest
from smallvision.data.split import prepare_split
from smallvision.schema import Split

PHOTO = 128  # px, the generated photos' side
TOP_SHARE = 0.04  # the audit's top 4 % of label issues must hold most of the flipped labels
SPLIT = (
    "data=folder",
    "data.source=unused",
    "data.split.train=0.5",
    "data.split.val=0.25",
    "data.split.test=0.25",
)


def test_the_stage_finds_planted_copies_in_test_and_flipped_labels(tmp_path, monkeypatch, capsys):
    """200 generated photos (128 px features of the frozen EfficientNet-Lite0); 45 near-copies of training images
    planted in test (15 each resized 1.5x, recompressed at JPEG quality 70, cropped by 2 % each side) and 5 labels
    flipped. At conf/'s audit.duplicate_threshold the copies are found as train-test leakage with few other pairs,
    the flipped labels top the label-issue list, and the counts are DVC metrics."""
    make_photos(tmp_path, per_class=100)
    planted, flipped = plant_copies(tmp_path, 45, flips=5)
    monkeypatch.chdir(tmp_path)
    outcome = run_stage("audit", capsys, "preset=smoke", "techniques.feature_extract.image_size=128")
    assert outcome.code == 0, outcome.err
    out = tmp_path / "data" / "audit"
    pairs = read_csv(out / audit.DUPLICATES)
    found = {(p["path_a"], p["path_b"]) for p in pairs} | {(p["path_b"], p["path_a"]) for p in pairs}
    recalled = sum(pair in found for pair in planted) / len(planted)
    false_pairs = len(pairs) - sum(pair in found for pair in planted)
    print(f"copies found: {recalled:.3f}; other pairs: {false_pairs}")
    assert recalled >= 0.95 and false_pairs <= 10, (recalled, false_pairs)  # seen: 44 of 45, 6 of 29,845 others
    uncropped = [pair for pair in planted if "cropped" not in pair[1]]
    assert all(pair in found for pair in uncropped)
    leaked = [p for p in pairs if (p["path_a"], p["path_b"]) in planted or (p["path_b"], p["path_a"]) in planted]
    assert all(p["leakage"] == "True" for p in leaked)
    issues = read_csv(out / audit.LABEL_ISSUES)
    top = [r["path"] for r in issues[: max(len(flipped), round(TOP_SHARE * 245))]]
    assert len(set(top) & set(flipped)) >= 0.8 * len(flipped), (top, flipped)
    summary = json.loads((out / audit.SUMMARY).read_text())
    assert summary["images"] == 245 and summary["leakage_train_test"] >= len(leaked)
    assert summary["label_issues"] == len(issues) and summary["off_task"] == round(0.01 * 245)
    assert len(list((tmp_path / "data" / "features").rglob("*.npy"))) == 1  # the feature cache: one file

    def no_extraction(*args):
        raise AssertionError("features extracted again")

    monkeypatch.setattr(features.FeatureExtractor, "predict_step", no_extraction)
    (out / audit.SUMMARY).unlink()
    again = run_stage("audit", capsys, "preset=smoke", "techniques.feature_extract.image_size=128")
    assert again.code == 0, again.err
    assert json.loads((out / audit.SUMMARY).read_text()) == summary  # from the cache, the same findings


def test_the_split_leaves_out_the_excluded_images_and_lists_them_with_their_reasons(tmp_path, monkeypatch, capsys):
    make_photos(tmp_path, per_class=12)
    (tmp_path / "exclude.txt").write_text(
        "# reviewed\n\ncircle/circle_0003.jpg # label error: a square\nsquare/square_0000.jpg  #  neither class\n"
    )
    monkeypatch.chdir(tmp_path)
    outcome = run_stage("split", capsys, *SPLIT, "data.exclude=exclude.txt")
    assert outcome.code == 0, outcome.err
    records, _ = load_manifest(tmp_path / "data" / "prepared")
    paths = {r.path for r in records}
    assert "circle/circle_0003.jpg" not in paths and "square/square_0000.jpg" not in paths
    assert len(paths) == 22
    report = json.loads((tmp_path / "data" / "prepared" / "split_report.json").read_text())
    assert report["excluded"] == 2 and report["images_found"] == 24
    assert {"path": "square/square_0000.jpg", "reason": "excluded: neither class"} in report["dropped"]
    assert "2 excluded by exclude.txt" in outcome.out


@pytest.mark.parametrize(
    ("lines", "fragments"),
    [
        ("circle/circle_9999.jpg # gone\n", ["exclude.txt (data.exclude) names 1 image(s)", "circle/circle_9999.jpg"]),
        ("".join(f"circle/circle_{n:04d}.jpg # drawn\n" for n in range(4)), ["every image of class 'circle'"]),
        ("circle/circle_0001.jpg\n", ["exclude.txt line 1", "<image path> # <reason>"]),
    ],
)
def test_a_bad_exclusion_list_is_one_line(tmp_path, monkeypatch, capsys, lines, fragments):
    make_photos(tmp_path, per_class=4)
    (tmp_path / "exclude.txt").write_text(lines)
    monkeypatch.chdir(tmp_path)
    outcome = run_stage("split", capsys, *SPLIT, "data.exclude=exclude.txt")
    assert_one_line_error(outcome, *fragments)


def plant_copies(root: Path, count: int, flips: int = 0) -> tuple[list[tuple[str, str]], list[str]]:
    """Near-copies of `count` training images added to test (files in the raw folder, rows in the manifest) and
    the labels of `flips` other images swapped; returns the (original, copy) paths and the flipped paths."""
    prepared = root / "data" / "prepared"
    records, classes = load_manifest(prepared)
    raw = records[0].file.parents[len(Path(records[0].path).parts) - 1]
    train = [r for r in records if r.split == "train"]
    flipped = [r.path for r in records[1::2][-flips:]] if flips else []  # never an original of a copy
    other = {classes[0]: classes[1], classes[1]: classes[0]}
    rows = [(r.path, other[r.label] if r.path in flipped else r.label, r.split, r.sha256) for r in records]
    planted = []
    for n, record in enumerate(train[:: max(1, len(train) // count)][:count]):
        kind = ("resized", "recompressed", "cropped")[n % 3]
        data = _near_copy(Image.open(record.file).convert("RGB"), kind)
        path = f"{Path(record.path).parent.as_posix()}/copy_{kind}_{n:03d}.jpg"
        (raw / path).write_bytes(data)
        rows.append((path, record.label, "test", hashlib.sha256(data).hexdigest()))
        planted.append((record.path, path))
    rows.sort(key=lambda r: (SPLITS.index(r[2]), classes.index(r[1]), r[0]))
    with open(prepared / MANIFEST, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows([MANIFEST_COLUMNS, *rows])
    return planted, flipped


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def make_photos(root: Path, per_class: int, seed: int = 0) -> Path:
    """Generated "photos" as distinct from each other as real ones are: a random low-frequency colour field (each
    image its own scene) with the class's shape on it in a random colour, split 50/25/25 under root/data."""
    rng = np.random.default_rng(seed)
    raw = root / "data" / "raw"
    for label in ("circle", "square"):
        (raw / label).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            scene = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize(
                (PHOTO, PHOTO), Image.BICUBIC
            )
            draw = ImageDraw.Draw(scene)
            for _ in range(6):  # clutter: thick random strokes
                ends = [int(v) for v in rng.integers(0, PHOTO, 4)]
                draw.line(ends, fill=tuple(int(c) for c in rng.integers(0, 256, 3)), width=int(rng.integers(2, 6)))
            x, y, r = *rng.integers(PHOTO * 3 // 10, PHOTO * 7 // 10, 2), int(rng.integers(PHOTO // 7, PHOTO // 4))
            shape = draw.ellipse if label == "circle" else draw.rectangle
            shape((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
            scene.save(raw / label / f"{label}_{n:04d}.jpg", quality=90)
    split = Split(train=0.5, val=0.25, test=0.25)
    prepare_split(
        raw, root / "data" / "prepared", split=split, seed=0, classes=None, workers=1, limits=LIMITS, progress=False
    )
    return root


def _near_copy(image: Image.Image, kind: str) -> bytes:
    """A copy a web scrape would hold: resized, recompressed as a lower-quality JPEG, or slightly cropped."""
    w, h = image.size
    if kind == "resized":
        image = image.resize((round(w * 1.5), round(h * 1.5)), Image.Resampling.BICUBIC)
    elif kind == "cropped":
        image = image.crop((w // 50, h // 50, w - w // 50, h - h // 50))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=70 if kind == "recompressed" else 90)
    return out.getvalue()

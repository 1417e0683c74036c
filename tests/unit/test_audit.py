"""The data audit: confident learning finds planted label flips, cosine similarity of the frozen base's features
finds planted near-copies (resized, recompressed, cropped) of training images in test, and the stage writes its
lists and counts."""

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
from smallvision.data import exclusions
from smallvision.data.manifest import MANIFEST, MANIFEST_COLUMNS, SPLITS, load_manifest
from smallvision.data.split import prepare_split
from smallvision.schema import Split

PHOTO = 128  # px, the generated photos' side
FLIP_SHARE, TOP_SHARE = 0.02, 0.04
SPLIT = (
    "data=folder",
    "data.source=unused",
    "data.split.train=0.5",
    "data.split.val=0.25",
    "data.split.test=0.25",
)  # 2 % of the labels flipped; the audit's top 4 % must hold most of them


def clustered_features(n: int, classes: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Feature vectors in one noisy cluster per class (what a frozen base gives two separable classes)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 1.0
    labels = rng.integers(0, classes, n)
    return centres[labels] + rng.normal(size=(n, dim)), labels


def flip(labels: np.ndarray, share: float, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(labels), round(share * len(labels)), replace=False)
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, classes, len(flipped))) % classes
    return noisy, flipped


@pytest.mark.parametrize("classes", [2, 3])
def test_out_of_fold_confident_learning_ranks_the_flipped_labels_first(classes):
    feats, labels = clustered_features(2000, classes, 32, seed=classes)
    noisy, flipped = flip(labels, FLIP_SHARE, classes, seed=1)
    probs = audit.out_of_fold_probabilities(feats, noisy, folds=5, regularisation=1.0, max_iter=1000, seed=0)
    issues = audit.label_issues(noisy, probs)
    top = np.argsort(issues.quality, kind="stable")[: round(TOP_SHARE * len(noisy))]
    recovered = len(set(top) & set(flipped)) / len(flipped)
    assert recovered >= 0.8, recovered
    flagged = set(issues.ranked.tolist())
    assert len(set(flipped) & flagged) >= 0.8 * len(flipped)
    assert len(flagged - set(flipped)) <= len(flipped)  # few clean images doubted
    assert (issues.suggested[flipped] == labels[flipped]).mean() >= 0.8  # and the right label suggested


def test_an_image_is_never_scored_by_a_model_that_saw_it():
    """With features that identify each image but say nothing of its class (labels at random), in-fold scoring
    would memorise the labels; out of fold the probabilities stay at chance."""
    rng = np.random.default_rng(0)
    feats, labels = rng.normal(size=(400, 600)), rng.integers(0, 2, 400)
    probs = audit.out_of_fold_probabilities(feats, labels, folds=4, regularisation=100.0, max_iter=2000, seed=0)
    assert abs((probs.argmax(1) == labels).mean() - 0.5) < 0.1


def test_near_duplicates_are_pairs_at_or_above_the_threshold_most_similar_first():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(2500, 16))  # more rows than one block of the similarity matrix
    feats[2400] = feats[3] * 5 + 0.01  # scale does not matter: cosine
    feats[2499] = feats[1500] + rng.normal(size=16) * 0.2
    pairs = audit.near_duplicates(feats, 0.97)
    assert [(i, j) for i, j, _ in pairs] == [(3, 2400), (1500, 2499)]
    assert pairs[0][2] > pairs[1][2] >= 0.97


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


# --------------------------------------------------------------------------- the reviewed exclusion list


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


def test_audit_rows_are_appended_to_the_exclusion_file_once(tmp_path):
    audit_csv = tmp_path / "label_issues.csv"
    audit_csv.write_text("path,split,label,suggested,score\na/1.jpg,test,cat,dog,0.01\na/2.jpg,train,dog,cat,0.02\n")
    target = tmp_path / "exclude.txt"
    target.write_text("# reviewed\n")
    assert exclusions.main([str(audit_csv), str(target), "label error", "2"]) == 0
    assert exclusions.main([str(audit_csv), str(target), "label error", "1", "2"]) == 0
    assert exclusions.read_exclusions(target) == {
        "a/2.jpg": "label error (labelled dog, looks cat)",
        "a/1.jpg": "label error (labelled cat, looks dog)",
    }

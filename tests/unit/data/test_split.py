"""The split stage: layouts, drop reasons, de-duplication, stratified seeded split, manifest and report."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from helpers.split import COUNTS, reasons, report_of, run_split
from helpers.study import config
from PIL import Image

from smallvision.data.manifest import MANIFEST, REPORT, SPLITS, load_manifest
from smallvision.data.split import split_sizes
from smallvision.errors import ConfigError, DataError
from smallvision.schema import Split, validate


def split_amounts(split: dict) -> dict:
    """data.split checked as the entry scripts check it."""
    checked = validate(Split, split, "data.split")
    checked.check_used(["train", "val", "test"])  # the split stage's check of a layout that uses all three
    return checked.amounts()


# --------------------------------------------------------------------------- layouts


def test_presplit_folders_are_kept_as_given(tmp_path, make_tree):
    raw = tmp_path / "raw"
    make_tree(raw / "train", {"a": 4, "b": 4}, seed=1)
    make_tree(raw / "validation", {"a": 2, "b": 2}, seed=2)
    make_tree(raw / "test", {"a": 3, "b": 3}, seed=3)
    out = tmp_path / "out"
    report = run_split(raw, out, split={"train": 100, "val": 100, "test": 100})  # ignored: the folders decide
    assert report.layout == "presplit"
    assert report.counts == {"train": {"a": 4, "b": 4}, "val": {"a": 2, "b": 2}, "test": {"a": 3, "b": 3}}
    records, _ = load_manifest(out)
    assert all(
        r.path.split("/")[0] == {"train": "train", "val": "validation", "test": "test"}[r.split] for r in records
    )


def test_train_and_val_folders_val_becomes_test_and_validation_is_carved_from_train(tmp_path, make_tree):
    """The PyTorch transfer-learning tutorial's hymenoptera_data: train/ and val/, no test/."""
    raw = tmp_path / "raw"
    make_tree(raw / "hymenoptera_data" / "train", {"ants": 10, "bees": 12}, seed=1)
    make_tree(raw / "hymenoptera_data" / "val", {"ants": 4, "bees": 5}, seed=2)
    out = tmp_path / "out"
    report = run_split(raw, out, split={"train": 0.6, "val": 0.2, "test": 0.2})
    assert report.layout == "presplit_train_val"
    # val/ is the test split whole; validation is 20 % of each class's train/ images (2 of 10, 2 of 12)
    assert report.counts == {
        "train": {"ants": 8, "bees": 10},
        "val": {"ants": 2, "bees": 2},
        "test": {"ants": 4, "bees": 5},
    }
    records, _ = load_manifest(out)
    folder = {r.path: r.path.split("/")[1] for r in records}
    assert {folder[r.path] for r in records if r.split == "test"} == {"val"}
    assert {folder[r.path] for r in records if r.split in ("train", "val")} == {"train"}
    assert report_of(out)["split_from"] == {
        "train": "hymenoptera_data/train/, less the validation images",
        "val": "hymenoptera_data/train/: data.split.val=0.2 of each class, stratified, seed 0",
        "test": "hymenoptera_data/val/",
    }
    carved = {r.path for r in records if r.split == "val"}
    for seed, same in ((0, True), (7, False)):  # seeded: the same seed carves the same images, another seed others
        again = run_split(raw, tmp_path / f"seed{seed}", split={"train": 0.6, "val": 0.2, "test": 0.2}, seed=seed)
        assert again.counts == report.counts
        assert ({r.path for r in load_manifest(tmp_path / f"seed{seed}")[0] if r.split == "val"} == carved) is same


def test_train_and_test_folders_carve_validation_by_count(tmp_path, make_tree):
    raw = tmp_path / "raw"
    make_tree(raw / "Train", {"a": 6, "b": 7}, seed=1)
    make_tree(raw / "test", {"a": 3, "b": 2}, seed=2)
    (raw / "notes.jpg").write_bytes(b"")  # beside the split folders: dropped with its reason
    report = run_split(raw, tmp_path / "out", split={"train": 100, "val": 2, "test": 100})  # train, test: ignored
    assert report.layout == "presplit_train_test"
    assert report.counts == {"train": {"a": 4, "b": 5}, "val": {"a": 2, "b": 2}, "test": {"a": 3, "b": 2}}
    assert report.split_from["test"] == "test/" and report.split_from["val"].startswith("Train/: data.split.val=2")
    assert reasons(report) == {"notes.jpg": "outside the Train/, test/ folders"}


def test_carving_validation_needs_a_usable_data_split_val(tmp_path, make_tree):
    raw = tmp_path / "raw"
    make_tree(raw / "train", {"a": 5, "b": 3}, seed=1)
    make_tree(raw / "val", {"a": 2, "b": 2}, seed=2)
    with pytest.raises(ConfigError, match=r"data.split.val=0: train/ comes without a validation folder"):
        run_split(raw, tmp_path / "out", split={"train": 0.8, "val": 0, "test": 0.2})
    with pytest.raises(DataError, match=r"class 'b' has 3 valid images, none left to train on; lower data.split.val"):
        run_split(raw, tmp_path / "out", split={"train": 1, "val": 3, "test": 1})
    with pytest.raises(DataError, match=r"class 'b': 0.1 of its 3 images is none; raise data.split.val"):
        run_split(raw, tmp_path / "out", split={"train": 0.8, "val": 0.1, "test": 0.1})
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- bad input: every case dropped with a reason or loaded


def test_every_bad_file_is_dropped_with_its_reason_and_odd_images_are_kept(
    tmp_path, make_tree, write_image, write_png_bomb
):
    raw = tmp_path / "raw"
    make_tree(raw, {"Cat": 6, "Dog": 6})
    cat, dog = raw / "Cat", raw / "Dog"
    (cat / "666.jpg").write_bytes(b"")
    truncated = write_image(dog / "11702.jpg", seed=7, size=(96, 96))
    truncated.write_bytes(truncated.read_bytes()[:600])
    (cat / "text.jpg").write_bytes(b"not a jpeg at all " * 10)
    (cat / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 thumbnail cache")
    shutil.copy(cat / "0.jpg", dog / "copy_of_cat0.jpg")
    write_image(cat / ".hidden.jpg", seed=50)
    write_image(dog / "._resource_fork.jpg", seed=51)
    write_image(raw / ".cache" / "x.jpg", seed=52)
    outside = write_image(tmp_path / "elsewhere" / "outside.jpg", seed=53)
    os.symlink(outside, dog / "link_out.jpg")
    os.symlink(cat / "1.jpg", dog / "link_in.jpg")  # inside the tree: same bytes, so a duplicate
    write_png_bomb(cat / "bomb.png")
    # odd but valid: each must end up in the manifest
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(cat / "cmyk.jpg")
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(cat / "deep16.png")
    Image.new("RGB", (9, 9), (1, 2, 3)).convert("P").save(cat / "palette.png")
    Image.new("L", (9, 9), 99).save(dog / "grey.png")
    Image.new("RGBA", (9, 9), (0, 0, 0, 0)).save(dog / "alpha.png")
    Image.new("RGB", (9, 9), (5, 5, 200)).save(
        dog / "anim.gif", save_all=True, append_images=[Image.new("RGB", (9, 9), (200, 5, 5))]
    )
    write_image(dog / "photo.webp", seed=60)
    write_image(dog / "UPPER.JPG", seed=61)
    write_image(dog / "long.jpeg", seed=62)
    write_image(dog / "chien_été_狗.jpg", seed=63)

    out = tmp_path / "out"
    report = run_split(raw, out, split={"train": 0.5, "val": 0.25, "test": 0.25})
    dropped = reasons(report)
    assert dropped == {
        "Cat/666.jpg": "empty file",
        "Dog/11702.jpg": "does not decode (truncated or corrupt)",
        "Cat/text.jpg": "not an image",
        "Cat/Thumbs.db": "not an image (extension .db)",
        "Dog/copy_of_cat0.jpg": "duplicate of Cat/0.jpg",
        "Dog/link_in.jpg": "duplicate of Cat/1.jpg",
        "Cat/.hidden.jpg": "hidden file",
        "Dog/._resource_fork.jpg": "hidden file",
        ".cache/": "hidden folder (1 files)",
        "Dog/link_out.jpg": "symlink pointing outside the data tree",
        "Cat/bomb.png": dropped["Cat/bomb.png"],
    }
    assert dropped["Cat/bomb.png"].startswith("too large")
    assert report.duplicates == 2
    saved = report_of(out)
    assert saved["dropped_count"] == len(dropped) == len(saved["dropped"])
    kept = {r.path for r in load_manifest(out)[0]}
    odd = {
        "Cat/cmyk.jpg",
        "Cat/deep16.png",
        "Cat/palette.png",
        "Dog/grey.png",
        "Dog/alpha.png",
        "Dog/anim.gif",
        "Dog/photo.webp",
        "Dog/UPPER.JPG",
        "Dog/long.jpeg",
        "Dog/chien_été_狗.jpg",
    }
    assert odd <= kept
    # zero silent drops: every file in the tree is either in the manifest or in the report
    everything = {p.relative_to(raw).as_posix() for p in raw.rglob("*") if not p.is_dir() and ".cache" not in p.parts}
    assert everything == kept | (set(dropped) - {".cache/"})


# --------------------------------------------------------------------------- the split


def test_stratified_counts_and_unused(tmp_path, make_tree):
    raw = make_tree(tmp_path / "raw", {"Cat": 9, "Dog": 7})
    report = run_split(raw, tmp_path / "out")
    assert report.counts == {s: {"Cat": n, "Dog": n} for s, n in COUNTS.items()}
    assert report.unused == {"Cat": 3, "Dog": 1}
    saved = report_of(tmp_path / "out")
    assert saved["total"] == {"train": 6, "val": 4, "test": 2}
    assert saved["counts"]["train"]["Cat"] == 3 and saved["valid"] == 16


@pytest.mark.parametrize("split", [COUNTS, {"train": 0.6, "val": 0.2, "test": 0.2}, {**COUNTS, "test": "rest"}])
def test_an_exclusion_list_leaves_out_its_images_and_every_other_image_keeps_its_split(tmp_path, make_tree, split):
    raw = make_tree(tmp_path / "raw", {"Cat": 12, "Dog": 12})
    run_split(raw, tmp_path / "all", split)
    before = {r.path: r.split for r in load_manifest(tmp_path / "all")[0]}
    by_split = {name: sorted(p for p, s in before.items() if s == name and p.startswith("Cat")) for name in SPLITS}
    exclude = {by_split["train"][0]: "label error", by_split["val"][0]: "neither class"}
    report = run_split(raw, tmp_path / "some", split, exclude=exclude)
    after = {r.path: r.split for r in load_manifest(tmp_path / "some")[0]}
    assert after == {path: name for path, name in before.items() if path not in exclude}
    assert report.excluded == 2 and {reasons(report)[p] for p in exclude} == {
        "excluded: label error",
        "excluded: neither class",
    }
    assert report.counts["train"]["Cat"] == report_of(tmp_path / "all")["counts"]["train"]["Cat"] - 1


def test_an_exclusion_list_that_empties_a_split_of_a_class_is_refused(tmp_path, make_tree):
    raw = make_tree(tmp_path / "raw", {"Cat": 6, "Dog": 6})
    run_split(raw, tmp_path / "all")
    tested = [r.path for r in load_manifest(tmp_path / "all")[0] if r.split == "test" and r.label == "Cat"]
    with pytest.raises(
        DataError, match=r"class 'Cat' has no images left in test once the exclusion list leaves its images out"
    ):
        run_split(raw, tmp_path / "some", exclude=dict.fromkeys(tested, "drawn"))


def test_fractions_per_class(tmp_path, make_tree):
    raw = make_tree(tmp_path / "raw", {"a": 10, "b": 20})
    report = run_split(raw, tmp_path / "out", split={"train": 0.6, "val": 0.2, "test": 0.2})
    assert report.counts == {"train": {"a": 6, "b": 12}, "val": {"a": 2, "b": 4}, "test": {"a": 2, "b": 4}}
    assert split_sizes({"train": 0.7, "val": 0.15, "test": 0.15}, 7) == {"train": 5, "val": 1, "test": 1}


@pytest.mark.parametrize(
    "split, sizes",
    [
        ({"train": 3, "val": 2, "test": "rest"}, {"a": (3, 2, 4), "b": (3, 2, 8)}),
        ({"train": 0.5, "val": 0.2, "test": "rest"}, {"a": (5, 1, 3), "b": (7, 2, 4)}),
    ],
    ids=["counts", "fractions"],
)
def test_test_rest_puts_every_leftover_image_in_test_and_none_in_two_splits(tmp_path, make_tree, split, sizes):
    raw = make_tree(tmp_path / "raw", {"a": 9, "b": 14})
    (raw / "b" / "13.jpg").write_bytes((raw / "b" / "0.jpg").read_bytes())  # a duplicate: dropped, not tested
    report = run_split(raw, tmp_path / "out", split=split)
    assert {c: tuple(report.counts[s][c] for s in ("train", "val", "test")) for c in "ab"} == sizes
    assert report.unused == {"a": 0, "b": 0} and report_of(tmp_path / "out")["valid"] == 22
    records, _ = load_manifest(tmp_path / "out")
    paths = [r.path for r in records]
    assert len(paths) == len(set(paths)) == 22  # every valid image in exactly one split
    assert "b/13.jpg" not in paths


def test_test_rest_needs_an_image_left_for_test(tmp_path, make_tree):
    assert split_amounts({"train": 1000, "val": 500, "test": "rest"})["test"] == "rest"
    assert split_sizes({"train": 1000, "val": 500, "test": "rest"}, 12_499) == {
        "train": 1000,
        "val": 500,
        "test": 10_999,
    }
    raw = make_tree(tmp_path / "raw", {"a": 5, "b": 6})
    too_few = r"class 'a' has 5 (valid images|image files \(not yet decoded\)), too few to put any in test"
    with pytest.raises(DataError, match=too_few):
        run_split(raw, tmp_path / "out", split={"train": 3, "val": 2, "test": "rest"})
    with pytest.raises(ConfigError, match=r"data.split.val='rest' must be a count"):
        split_amounts({"train": 3, "val": "rest", "test": 2})


def test_same_inputs_and_seed_give_a_byte_identical_manifest(tmp_path, make_tree):
    raw = make_tree(tmp_path / "raw", {"Cat": 8, "Dog": 8})
    run_split(raw, tmp_path / "one", seed=3)
    run_split(raw, tmp_path / "two", seed=3, workers=2)  # also through the process pool
    moved = shutil.copytree(raw, tmp_path / "elsewhere" / "raw")
    run_split(moved, tmp_path / "elsewhere" / "three", seed=3)
    first = (tmp_path / "one" / MANIFEST).read_bytes()
    assert (
        first
        == (tmp_path / "two" / MANIFEST).read_bytes()
        == (tmp_path / "elsewhere" / "three" / MANIFEST).read_bytes()
    )
    assert first.splitlines()[0] == b"path,label,split,sha256"
    run_split(raw, tmp_path / "other", seed=4)
    assert (tmp_path / "other" / MANIFEST).read_bytes() != first


def test_too_few_images_names_class_needed_and_available(tmp_path, make_tree):
    raw = make_tree(tmp_path / "raw", {"Cat": 6, "Dog": 5})
    with pytest.raises(
        DataError,
        match=r"class 'Dog' has 5 image files \(not yet decoded\) but the split needs 6 \(train 3 \+ val 2 \+ test 1\)",
    ):
        run_split(raw, tmp_path / "out")
    (raw / "Cat" / "0.jpg").write_bytes(b"")  # enough files, too few after validation
    (raw / "Dog" / "5.jpg").write_bytes((raw / "Dog" / "0.jpg").read_bytes())
    with pytest.raises(
        DataError, match=r"class 'Cat' has 5 valid images .*\(dropped: 1 empty file\).*Dog.*\(dropped: 1 duplicate\)"
    ):
        run_split(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_class_list_must_match_the_folders(tmp_path, make_tree):
    raw = make_tree(tmp_path / "raw", {"Cat": 6, "Dog": 6})
    with pytest.raises(ConfigError, match=r"not found: \['Bird'\], found but not listed: \['Dog'\]"):
        run_split(raw, tmp_path / "out", classes=["Cat", "Bird"])
    report = run_split(raw, tmp_path / "out", classes=["Dog", "Cat"])  # the given order is the label order
    records, classes = load_manifest(tmp_path / "out")
    assert classes == report.classes == ["Dog", "Cat"]
    assert {r.target for r in records if r.label == "Dog"} == {0}


@pytest.mark.parametrize(
    "split, message",
    [
        ({"train": 10, "val": 0.2, "test": 0.2}, "mixes counts"),
        ({"train": -1, "val": 1, "test": 1}, r"data.split.train=-1"),
        ({"train": 0.7, "val": 0.3, "test": 0.3}, "sum to 1.3"),
        ({"train": 1.5, "val": 0.1, "test": 0.1}, r"data.split.train=1.5"),
        ({"train": 10, "val": 5}, "data.split.test is not set"),
        ({"train": 0, "val": 5, "test": 5}, "must be > 0"),
        ({"train": "many", "val": 5, "test": 5}, "data.split.train='many'"),
    ],
)
def test_bad_split_config(split, message):
    with pytest.raises(ConfigError, match=message):
        split_amounts(split)


def test_report_is_readable_by_dvc_metrics(tmp_path, make_tree):
    raw = make_tree(tmp_path / "raw", {"Cat": 6, "Dog": 6})
    run_split(raw, tmp_path / "out")
    saved = report_of(tmp_path / "out")
    numbers = {k: v for k, v in saved.items() if isinstance(v, (int, dict)) and not isinstance(v, bool)}
    assert {"counts", "total", "unused", "dropped_count", "duplicates", "images_found", "valid"} <= set(numbers)
    assert all(isinstance(n, int) for per_class in saved["counts"].values() for n in per_class.values())


def test_bad_pixel_limit_is_a_config_error():
    with pytest.raises(ConfigError, match="data.max_image_pixels=0"):
        config("data.max_image_pixels=0")
    with pytest.raises(ConfigError, match="data.workers=0"):
        config("data.workers=0")


def test_file_name_that_is_not_utf8_is_dropped_not_crashed(tmp_path, make_tree, write_image):
    raw = make_tree(tmp_path / "raw", {"Cat": 6, "Dog": 6})
    bad_name = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes: not UTF-8
    write_image(raw / "Cat" / bad_name, seed=77)
    report = run_split(raw, tmp_path / "out")
    assert reasons(report) == {"Cat/caf\\xe9.jpg": "file name is not valid UTF-8"}
    assert "caf\\\\xe9.jpg" in (tmp_path / "out" / REPORT).read_text(encoding="utf-8")

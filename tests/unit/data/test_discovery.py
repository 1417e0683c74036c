"""Finding the images and their classes in every folder layout."""

from __future__ import annotations

import pytest
from helpers.split import COUNTS, reasons, run_split

from smallvision.data.discovery import discover
from smallvision.errors import DataError


def test_petimages_layout(tmp_path, make_tree):
    raw = tmp_path / "raw"
    make_tree(raw / "PetImages", {"Cat": 6, "Dog": 6})
    (raw / "readme[1].txt").write_text("licence")
    found = discover(raw)
    assert found.layout == "petimages" and found.classes == ["Cat", "Dog"]
    assert {c.path for c in found.candidates} >= {"PetImages/Cat/0.jpg", "PetImages/Dog/5.jpg"}
    assert [(d.path, d.reason) for d in found.dropped] == [("readme[1].txt", "not an image (extension .txt)")]


def test_class_folders_any_number_nested_under_one_top_folder(tmp_path, make_tree):
    raw = tmp_path / "raw"
    make_tree(raw / "my_photos", {"bird": 6, "cat": 6, "dog": 6})
    found = discover(raw)
    assert found.layout == "class_folders" and found.classes == ["bird", "cat", "dog"]
    report = run_split(raw, tmp_path / "out")
    assert report.counts == {s: {c: n for c in ("bird", "cat", "dog")} for s, n in COUNTS.items()}


def test_kaggle_flat_names(tmp_path, write_image):
    raw = tmp_path / "raw"
    for i in range(6):
        write_image(raw / "train" / f"cat.{i}.jpg", seed=i)
        write_image(raw / "train" / f"dog.{i}.jpg", seed=100 + i)
    write_image(raw / "train" / "1234.jpg", seed=999)
    found = discover(raw)
    assert found.layout == "kaggle" and found.classes == ["cat", "dog"]
    assert {c.label for c in found.candidates if c.path.endswith("cat.3.jpg")} == {"cat"}
    assert reasons(found)["train/1234.jpg"].startswith("name does not give a class")


@pytest.mark.parametrize(
    "folders, message",
    [
        (("train", "val", "validation"), "it has both val/ and validation/"),
        (("val", "test"), "it has no train/"),
    ],
)
def test_ambiguous_presplit_layout_is_a_clear_error(tmp_path, make_tree, folders, message):
    raw = tmp_path / "raw"
    for i, name in enumerate(folders):
        make_tree(raw / name, {"a": 2, "b": 2}, seed=i)
    with pytest.raises(DataError, match=message):
        discover(raw)


def test_missing_or_empty_raw_folder(tmp_path):
    with pytest.raises(DataError, match="run the download stage"):
        discover(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no image files"):
        discover(tmp_path / "empty")

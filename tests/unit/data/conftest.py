"""Fixtures of the download stage's tests: a zip archive of a small PetImages tree."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest


@pytest.fixture
def image_zip(tmp_path, make_tree) -> Path:
    source = make_tree(tmp_path / "src" / "PetImages", {"Cat": 3, "Dog": 3})
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(source.rglob("*")):
            zf.write(path, path.relative_to(source.parent).as_posix())
    return archive

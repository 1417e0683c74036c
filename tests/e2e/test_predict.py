"""`pipelines/predict.py` (README "Predict"): one row per file with the class and probability training itself gave
that image (the same decoding and normalisation), and an `error` entry instead of a stop for a file it cannot
read."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import pytest
from helpers import ROOT
from helpers.project import run
from helpers.study import config, make_dataset, paths

from smallvision.data.manifest import load_manifest
from smallvision.training import train_technique

PREDICT = [sys.executable, str(ROOT / "pipelines" / "predict.py"), "hydra.run.dir=.", "hydra.output_subdir=null"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A project whose models/baseline/ holds a trained baseline (fp32, so predict's fp32 numbers match exactly)."""
    root = make_dataset(tmp_path_factory.mktemp("predict"), per_class=16)
    cfg = config("technique=baseline", "techniques.baseline.epochs=2", "trainer.precision=32-true")
    train_technique(cfg, paths(root, "baseline"), progress=False)
    return root


def test_predict_gives_what_training_gave_each_test_image_and_an_error_for_each_bad_file(trained, tmp_path):
    folder = tmp_path / "to predict"
    originals = {}  # the copy predict sees -> the manifest path training reported
    for record in (r for r in load_manifest(trained / "data" / "prepared")[0] if r.split == "test"):
        copy = folder / record.label / record.file.name  # nested: predict reads a folder recursively
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(record.file, copy)
        originals[str(copy)] = record.path
    (folder / "broken.jpg").write_bytes(b"these bytes are not an image" * 20)
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image either")
    output = tmp_path / "predictions.csv"

    result = run([*PREDICT, "technique=baseline", f"predict.input={folder}", f"predict.output={output}"], trained)
    assert f"{len(originals)} images predicted with baseline, 3 files could not be read -> {output}" in result.stdout

    rows = _rows(output)
    assert list(rows[0]) == ["path", "predicted", "probability", "error"]
    errors = {Path(r["path"]).name: r for r in rows if r["error"]}
    assert {name: r["error"] for name, r in errors.items()} == {
        "broken.jpg": "not an image",
        "empty.png": "empty file",
        "notes.txt": "not an image",
    }
    assert all(r["predicted"] == r["probability"] == "" for r in errors.values())

    trained_on = {r["path"]: r for r in _rows(trained / "models" / "baseline" / "test_predictions.csv")}
    predicted = {originals[r["path"]]: r for r in rows if not r["error"]}
    assert sorted(predicted) == sorted(trained_on) and len(predicted) == 8  # every test image, each once
    for path, row in predicted.items():
        assert row["predicted"] == trained_on[path]["predicted"], path
        assert float(row["probability"]) == pytest.approx(float(trained_on[path]["probability"]), abs=1e-5), path

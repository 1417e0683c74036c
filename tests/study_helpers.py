"""Helpers for tests that train: a composed config and a prepared synthetic dataset (generated, offline)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from smallvision.cli import to_dict
from smallvision.data.split import prepare_split
from smallvision.data.synthetic import generate
from smallvision.training import Paths

CONF = str(Path(__file__).resolve().parents[1] / "conf")

# small and fast: 64 px synthetic shapes, a few epochs (the book's learning rates, a faster one for the head)
FAST = [
    "data=synthetic", "logger.enabled=false", "trainer.progress=false",
    "techniques.baseline.image_size=64", "techniques.augment.image_size=64",
    "techniques.feature_extract.image_size=64", "techniques.fine_tune.image_size=64",
    "techniques.feature_extract.optimizer.lr=1e-3", "techniques.fine_tune.optimizer.lr=1e-4",
    "techniques.baseline.epochs=8", "techniques.augment.epochs=3",
    "techniques.feature_extract.epochs=6", "techniques.fine_tune.epochs=2",
]


def config(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return to_dict(compose("config", overrides=[*FAST, *overrides]))


def make_dataset(root: Path, per_class: int = 100, classes=("circle", "square"), seed: int = 0) -> Path:
    """Generated images under root/data/raw, split into root/data/prepared; returns root."""
    generate(root / "data" / "raw", classes=classes, per_class=per_class, image_size=64, seed=seed)
    prepare_split(root / "data" / "raw", root / "data" / "prepared", split={"train": 0.5, "val": 0.25, "test": 0.25},
                  seed=0, workers=1, progress=False)
    return root


def paths(root: Path, technique: str) -> Paths:
    return Paths(prepared=root / "data/prepared", cache=root / "data/cache", features=root / "data/features",
                 out=root / "models" / technique, models=root / "models")


ROOT = Path(__file__).resolve().parents[1]


def copy_project(project: Path, code_only: bool = False) -> Path:
    """A git + DVC project at `project` holding this repository's conf/, pipelines/, src/ and dvc.yaml
    (`code_only`: copy those into an existing project)."""
    for name in ("conf", "pipelines", "src"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "dvc.yaml", project)
    if code_only:
        return project
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=project, check=True, capture_output=True)
    shutil.copy(ROOT / ".dvc" / "config", project / ".dvc" / "config")
    return project


def compose_params(project: Path, *overrides: str, conf: Path | None = None) -> None:
    """Write params.yaml the way `dvc exp run -S ...` does (DVC's own Hydra composition) from `conf`
    (default: the project's conf/)."""
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(project / "params.yaml", str(conf or project / "conf"), None, "config", str(project),
                     list(overrides))

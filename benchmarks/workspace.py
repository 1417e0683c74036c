"""A git + DVC copy of the project (conf/, pipelines/, src/, dvc.yaml) and its params.yaml composed the way
`dvc exp run -S ...` does: the workspace benchmarks run the study in, and the one the end-to-end tests run
DVC in (tests/helpers/project.py imports it from here)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def copy_project(project: Path, code_only: bool = False) -> Path:
    """A git + DVC project at `project` holding this repository's conf/, pipelines/, src/, dvc.yaml, exclude.txt and
    .gitignore (`code_only`: copy those into an existing project, as benchmarks/ refreshes its workspace)."""
    for name in ("conf", "pipelines", "src"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "dvc.yaml", project)
    shutil.copy(ROOT / "exclude.txt", project)  # the exclusion list dvc.yaml's split stage depends on
    if code_only:
        return project
    shutil.copy(ROOT / ".gitignore", project)  # the real one: what an experiment's commit holds
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=project, check=True, capture_output=True)
    shutil.copy(ROOT / ".dvc" / "config", project / ".dvc" / "config")
    shutil.copytree(ROOT / ".dvc" / "plots", project / ".dvc" / "plots")  # the page template .dvc/config names
    return project


def compose_params(project: Path, *overrides: str, conf: Path | None = None) -> None:
    """Write params.yaml the way `dvc exp run -S ...` does (DVC's own Hydra composition) from `conf`
    (default: the project's conf/)."""
    from dvc.utils.hydra import compose_and_dump  # here: it imports dvc, which split's workers need not

    compose_and_dump(
        project / "params.yaml", str(conf or project / "conf"), None, "config", str(project), list(overrides)
    )

"""A copy of the project (git + DVC) and its commands run in subprocesses, as a user runs them."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def copy_project(project: Path, code_only: bool = False) -> Path:
    """A git + DVC project at `project` holding this repository's conf/, pipelines/, src/ and dvc.yaml
    (`code_only`: copy those into an existing project, as benchmarks/ refreshes its workspace)."""
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

    compose_and_dump(
        project / "params.yaml", str(conf or project / "conf"), None, "config", str(project), list(overrides)
    )


def env(project: Path, **extra: str) -> dict[str, str]:
    """The environment a command runs in: this repository's code, this Python's scripts (dvc) first on PATH, and
    an MLflow store inside the project."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{project}/mlflow.db",
        **extra,
    }


def run(
    cmd: list[str], cwd: Path, timeout: int = 900, check: bool = True, **extra_env: str
) -> subprocess.CompletedProcess:
    """Run `cmd` in `cwd`; with `check`, fail the test with the command's output unless it exits 0."""
    result = subprocess.run(
        cmd, cwd=cwd, env=env(cwd, **extra_env), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check:
        assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def start(cmd: list[str], cwd: Path, log: Path, **extra_env: str) -> subprocess.Popen:
    """A child in its own process group (as a shell job is), so a signal reaches every process it starts; its
    output goes to `log` (a file, not a pipe nobody reads while it runs)."""
    with open(log, "w") as out:
        return subprocess.Popen(
            cmd, cwd=cwd, env=env(cwd, **extra_env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def entry_script(name: str) -> ModuleType:
    """pipelines/<name>.py loaded as a module, to call its `main(argv)` in this process."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "pipelines" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

"""A copy of the project (git + DVC) and its commands run in subprocesses, as a user runs them, signalled and
watched as a user would (Ctrl-C, a kill mid-training), and what DVC then says."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmarks' modules are top-level ones
from workspace import compose_params, copy_project  # noqa: F401  (the tests' copy too: one owner)


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
    """A child in its own process group (as a shell job is), so a signal reaches every process it starts, with
    SIGINT at its default (`AS_A_TERMINAL_JOB`); its output goes to `log` (a file, not a pipe nobody reads while
    it runs)."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-c", AS_A_TERMINAL_JOB, *cmd],
            cwd=cwd,
            env=env(cwd, **extra_env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


# Runs the command with SIGINT at its default, as a terminal runs a job. A shell without job control starts
# background jobs with SIGINT ignored and exec passes the ignore on, so a test run launched that way (`... &` in a
# script) would hand its children a Ctrl-C they cannot hear. (A Python step before exec, not Popen's preexec_fn,
# which is unsafe in a process with threads.)
AS_A_TERMINAL_JOB = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])"
)


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    """`sig` to every process of a child `start` made (what a terminal's Ctrl-C or a kill of the job does)."""
    os.killpg(proc.pid, sig)


def wait_mid_training(proc: subprocess.Popen, checkpoint: Path, log: Path, timeout: float = 300) -> None:
    """Until this run's first checkpoint is written (end of epoch 1), then a little into epoch 2; fails if the run
    ends first. A checkpoint an earlier run left does not count."""
    previous = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
    deadline = time.monotonic() + timeout
    while not (checkpoint.exists() and checkpoint.stat().st_size > 0 and checkpoint.stat().st_mtime_ns != previous):
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before it was killed:\n{log.read_text()[-5000:]}")
        if time.monotonic() > deadline:
            signal_group(proc, signal.SIGKILL)
            pytest.fail(f"no checkpoint appeared in time:\n{log.read_text()[-5000:]}")
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc.poll() is None, "training finished before the kill: make the epochs longer"


def dvc_status(project: Path, *stages: str) -> dict:
    """`dvc status --json` of `stages` and the stages they depend on ({} when nothing changed)."""
    return json.loads(run([sys.executable, "-m", "dvc", "status", "--json", *stages], project).stdout or "{}")


def lock_stages(project: Path) -> set[str]:
    """The stages dvc.lock records (as finished)."""
    lock = project / "dvc.lock"
    return set(yaml.safe_load(lock.read_text())["stages"]) if lock.exists() else set()

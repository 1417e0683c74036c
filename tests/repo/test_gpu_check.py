"""benchmarks/gpu_check.sh stops at once, clearly, on a machine without a GPU; its DDP check's evaluation
(benchmarks/eval_checkpoint.py) gives back a run's own test metrics, image for image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import ROOT
from helpers.project import env
from helpers.study import config, make_dataset, paths

from smallvision.training import train_technique

SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
BASH = shutil.which("bash")


def check(path_dirs: list[Path], **extra: str) -> tuple[subprocess.CompletedProcess, float]:
    environ = {**os.environ, "PATH": os.pathsep.join(map(str, path_dirs)), **extra}
    started = time.perf_counter()
    result = subprocess.run([BASH, str(SCRIPT)], check=False, env=environ, capture_output=True, text=True, timeout=120)
    return result, time.perf_counter() - started


def test_without_nvidia_smi_it_stops_at_once(tmp_path):
    result, seconds = check([tmp_path])  # a PATH with no nvidia-smi on it
    assert result.returncode == 2 and seconds < 5
    assert result.stderr == (
        "gpu_check: no NVIDIA GPU here (nvidia-smi not found): run this on a machine with one or more NVIDIA GPUs "
        "and their driver\n"
    )
    assert result.stdout == ""


def test_hidden_gpus_stop_it_at_once(tmp_path):
    result, seconds = check([tmp_path], CUDA_VISIBLE_DEVICES="")
    assert result.returncode == 2 and seconds < 5
    assert "no GPU visible: CUDA_VISIBLE_DEVICES='' hides every GPU" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the check would run for real")
def test_a_gpu_pytorch_cannot_use_stops_it_before_any_work(tmp_path):
    """nvidia-smi lists a GPU (a stand-in here) but this torch has no CUDA: stop before copying or training."""
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3'\n")
    fake.chmod(0o755)
    environ = env(tmp_path)
    result, seconds = check([fake.parent, *environ["PATH"].split(os.pathsep)], PYTHONPATH=environ["PYTHONPATH"])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "gpu_check: PyTorch sees no CUDA GPU" in result.stderr and seconds < 60
    assert result.stdout == ""  # nothing started: the table's first line (the machine) is not even printed


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A project folder with a split, a one-epoch baseline run and its params.yaml (the smoke preset)."""
    root = make_dataset(tmp_path_factory.mktemp("evaluated"), per_class=20)
    cfg = config("technique=baseline", "techniques.baseline.epochs=1")
    train_technique(cfg, paths(root, "baseline"), progress=False)
    (root / "params.yaml").write_text(yaml.safe_dump(cfg.model_dump()))
    return root


def evaluate(project: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, dict]:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "eval_checkpoint.py"), str(project), "baseline", *overrides]
    result = subprocess.run(
        cmd, check=False, cwd=ROOT / "benchmarks", env=env(project), capture_output=True, text=True, timeout=600
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    return result, json.loads(lines[-1]) if lines else {}


def test_evaluating_a_checkpoint_again_gives_its_runs_test_metrics(trained):
    result, found = evaluate(trained)
    assert result.returncode == 0, result.stderr[-3000:]
    assert found["equal"] and found["evaluated"]["test_images"] == 10
    assert found["evaluated"]["predicted"] == found["recorded"]["predicted"]
    metrics = json.loads((trained / "models" / "baseline" / "metrics.json").read_text())
    assert found["evaluated"]["test_correct"] == metrics["test_correct"]


@pytest.mark.slow
def test_evaluation_on_two_ddp_processes_gives_the_same_metrics(trained):
    """What gpu_check does with trainer=ddp on GPUs, here with trainer=ddp_cpu (2 gloo processes)."""
    result, found = evaluate(trained, "trainer=ddp_cpu", "trainer.precision=auto", "trainer.channels_last=true")
    assert result.returncode == 0, result.stderr[-3000:]
    assert found["equal"] and found["evaluated"]["test_images"] == 10

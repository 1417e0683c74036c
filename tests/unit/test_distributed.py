"""DDP from the entry scripts: which process is rank zero before any Trainer exists, and the DDP children of a
Hydra sweep job, each running that job only."""

from __future__ import annotations

import os

import pytest

from smallvision import distributed


def test_a_ddp_child_of_a_sweep_job_runs_that_job_only():
    # HydraConfig's runtime.config_sources of `python pipelines/train.py -m --config-dir /p/more ...`
    sources = [
        {"path": "hydra.conf", "schema": "pkg", "provider": "hydra"},
        {"path": "/p/conf", "schema": "file", "provider": "main"},
        {"path": "/p/more", "schema": "file", "provider": "command-line"},
        {"path": "", "schema": "structured", "provider": "schema"},
    ]
    command = distributed.child_command(
        ["python", "/p/pipelines/train.py"],
        distributed.config_flags("config", sources),
        job_overrides=["technique=augment", "seed=1"],
        hydra_overrides=[
            "hydra.mode=MULTIRUN",
            "hydra.sweep.dir=multirun/s",
            "hydra/launcher=basic",
            "hydra.job.chdir=false",
        ],
        output_dir="/p/multirun/s/4",
        local_rank=1,
    )
    assert command == [
        "python",
        "/p/pipelines/train.py",
        "--config-path=/p/conf",
        "--config-name=config",
        "--config-dir=/p/more",
        "technique=augment",
        "seed=1",
        "hydra.job.chdir=false",
        "hydra.run.dir='/p/multirun/s/4'",
        "hydra.output_subdir=null",
        "hydra.job.name=train_ddp_process_1",
    ]


def test_after_a_job_that_launched_children_the_next_job_launches_afresh(monkeypatch):
    for key in distributed.LAUNCH_ENV:
        monkeypatch.delenv(key, raising=False)
    with distributed.hydra_ddp_job("/sweeps/s"):
        assert os.environ[distributed.SWEEP_DIR_ENV] == "/sweeps/s"  # what the children inherit
        os.environ.update(LOCAL_RANK="0", MASTER_PORT="12910", WORLD_SIZE="2")  # what Lightning's launcher sets
    assert not any(key in os.environ for key in distributed.LAUNCH_ENV)

    monkeypatch.setenv("LOCAL_RANK", "1")  # a child (or torchrun's rank): its environment is not touched
    with distributed.hydra_ddp_job("/sweeps/s"):
        assert distributed.SWEEP_DIR_ENV not in os.environ
    assert os.environ["LOCAL_RANK"] == "1"


@pytest.mark.parametrize(
    ("environ", "zero"),
    [
        ({}, True),
        ({"LOCAL_RANK": "0"}, True),
        ({"LOCAL_RANK": "1"}, False),
        ({"RANK": "3", "LOCAL_RANK": "0"}, False),
        ({"SLURM_PROCID": "2"}, False),
        ({"SLURM_PROCID": "0"}, True),
        ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, False),  # node 1 of a hand-started multi-node run
    ],
)
def test_rank_zero_is_known_before_the_trainer_starts(environ, zero):
    assert distributed.is_rank_zero(environ) is zero

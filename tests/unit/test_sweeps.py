"""Sweeps: the SLURM launcher config is valid for submitit, and a sweep's fine-tune job starts from the sweep's own
feature-extract job with the same seed (DDP children of a sweep job: test_distributed.py; seeds aggregated:
test_runs.py and visualize/test_seed_comparison.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.study import CONF, config, make_dataset

# --------------------------------------------------------------------------------------------- SLURM


def test_slurm_launcher_config_makes_one_task_per_gpu(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from submitit.slurm.slurm import SlurmExecutor, _convert_mem, _make_sbatch_string

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "hydra/launcher=slurm",
                "trainer=ddp",
                "trainer.devices=4",
                "trainer.num_nodes=2",
                "hydra.launcher.partition=gpu",
            ],
            return_hydra_config=True,
        )
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher"
    # the launcher hands these to submitit's SLURM executor: each must be a parameter it knows
    names = SlurmExecutor._equivalence_dict()
    params = {names.get(k, k): v for k, v in launcher.params.items() if k not in ("submitit_folder", "max_num_timeout")}
    assert set(params) <= SlurmExecutor._valid_parameters()
    params["mem"] = _convert_mem(params["mem"])
    sbatch = _make_sbatch_string(command="python -m submitit.core._submit", folder=str(tmp_path), **params)
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --partition=gpu",
    ):
        assert line in sbatch


def test_a_sweep_fine_tune_starts_from_its_own_feature_extract_job_with_the_same_seed(tmp_path):
    from smallvision import sweeps
    from smallvision.errors import ConfigError

    sweep = tmp_path / "sweep"
    for number, (technique, seed) in enumerate([("feature_extract", 0), ("feature_extract", 1), ("baseline", 2)]):
        (sweep / str(number)).mkdir(parents=True)
        (sweep / str(number) / "metrics.json").write_text(json.dumps({"technique": technique, "seed": seed}))
    assert sweeps.sweep_head(sweep, 1) == sweep / "1" / "best.ckpt"
    assert sweeps.sweep_head(sweep, 2) is None  # none in the sweep: the DVC stage's head
    (sweep / "3").mkdir()
    (sweep / "3" / "metrics.json").write_text(json.dumps({"technique": "feature_extract", "seed": 1}))
    with pytest.raises(ConfigError, match="2 feature_extract jobs with seed 1"):
        sweeps.sweep_head(sweep, 1)


def test_a_sweeps_fine_tune_job_starts_from_its_own_feature_extract_job_not_the_dvc_stages(tmp_path, monkeypatch):
    """README "Sweeps": in a sweep, fine-tune starts from the sweep's feature-extract job with the same seed, not from
    models/feature_extract/ (run_training as pipelines/train.py runs a sweep job, in this process)."""
    from helpers.study import Weights, add_callbacks

    from smallvision.job import run_training

    root = make_dataset(tmp_path, per_class=8)
    sweep = root / "multirun" / "2026-12-06" / "08-00-00"
    epochs = ("techniques.feature_extract.epochs=1", "techniques.fine_tune.epochs=1")
    run_training(config("technique=feature_extract", "seed=0", *epochs), root, str(sweep), sweep / "0")
    run_training(config("technique=feature_extract", "seed=1", *epochs), root, str(sweep), sweep / "1")
    run_training(config("technique=feature_extract", "seed=7", *epochs), root)  # the DVC stage's models/feature_extract
    head = Weights("head")
    add_callbacks(monkeypatch, head)
    run_training(config("technique=fine_tune", "seed=1", *epochs), root, str(sweep), sweep / "2")

    def trained_head(folder: Path) -> dict:
        state = torch.load(folder / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
        return {k.removeprefix("net."): v for k, v in state.items()}

    def same(a: dict, b: dict) -> bool:
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    assert same(head.start, trained_head(sweep / "1"))  # the job with seed 1
    assert not same(head.start, trained_head(sweep / "0"))
    assert not same(head.start, trained_head(root / "models" / "feature_extract"))
    assert json.loads((sweep / "2" / "metrics.json").read_text())["technique"] == "fine_tune"
    # a job trains and tracks itself only: the sweep's comparison is drawn when the sweep ends (sweep_callback)
    assert not list(sweep.glob("*_comparison.*"))

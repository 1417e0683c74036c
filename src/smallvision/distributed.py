"""DDP from the entry scripts: which process owns outputs and tracking, and DDP inside Hydra sweeps.

Lightning's DDP launcher (`strategy: ddp` without torchrun or SLURM) starts ranks 1..N-1 by running the
command line again. In a Hydra multirun that command line is the whole sweep, so each child ran every
job of the sweep and rewrote the sweep's multirun.yaml; and the next job of the sweep found the first
job's process group and environment (LOCAL_RANK, MASTER_PORT) still set, so it started no children.
`hydra_ddp_job` fixes both: each child runs exactly the job that launched it (in run mode, in the job's
output folder), and after the job the launching process is reset so the next job starts its own children.

Used by the wiring in `smallvision.job`; this is the one module that reads the process's command line
and environment, because re-running the command line is what Lightning's launcher does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

# Set for the DDP children of a sweep job: they run in Hydra's run mode, and this says which sweep they belong to.
SWEEP_DIR_ENV = "SMALLVISION_SWEEP_DIR"
# What Lightning's launcher sets in the launching process (and so would leak into the sweep's next job).
LAUNCH_ENV = (
    "LOCAL_RANK",
    "NODE_RANK",
    "WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "PL_GLOBAL_SEED",
    "OMP_NUM_THREADS",
    SWEEP_DIR_ENV,
)
# Rank variables in Lightning's order (lightning.fabric.utilities.rank_zero._get_rank).
_RANK_KEYS = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
# Hydra overrides a child must not inherit: they are about the sweep, or the child sets its own.
_SWEEP_ONLY = (
    "hydra.mode",
    "hydra.sweep",
    "hydra.sweeper",
    "hydra/sweeper",
    "hydra.launcher",
    "hydra/launcher",
    "hydra.run",
    "hydra.output_subdir",
    "hydra.job.name",
)


def is_rank_zero(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is global rank 0, known before any Trainer exists (MLflow runs start before training).

    Lightning's own guess reads RANK, LOCAL_RANK or SLURM_PROCID; on a second node started by hand (NODE_RANK=1,
    Lightning's launcher) LOCAL_RANK is 0 there too, so the node rank is checked as well.
    """
    env = os.environ if environ is None else environ
    rank = next((int(env[k]) for k in _RANK_KEYS if env.get(k, "") != ""), 0)
    return rank == 0 and int(env.get("NODE_RANK") or 0) == 0


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _is_sweep_only(override: str) -> bool:
    key = _override_key(override)
    return any(key == k or key.startswith((f"{k}.", f"{k}/")) for k in _SWEEP_ONLY)


def _quoted(value: str) -> str:
    """A string value in Hydra's override grammar (paths may hold characters the grammar would parse)."""
    return f'"{value}"' if "'" in value else f"'{value}'"


def config_flags(config_name: str, config_sources: Sequence[Mapping[str, str]]) -> list[str]:
    """The flags that make a child compose the same primary config from the same folders: Hydra's record of the
    job (HydraConfig's job.config_name and runtime.config_sources, the `main` one from the script's config_path
    or --config-path, the `command-line` one from --config-dir)."""

    def where(source: Mapping[str, str]) -> str:
        return source["path"] if source["schema"] == "file" else f"{source['schema']}://{source['path']}"

    flags = [f"--config-path={where(s)}" for s in config_sources if s["provider"] == "main"]
    flags += [f"--config-name={config_name}"] if config_name else []
    return flags + [f"--config-dir={where(s)}" for s in config_sources if s["provider"] == "command-line"]


def child_command(
    program: Sequence[str],
    flags: Sequence[str],
    job_overrides: Sequence[str],
    hydra_overrides: Sequence[str],
    output_dir: str,
    local_rank: int,
) -> list[str]:
    """The command line that runs rank `local_rank` of one Hydra job, and only that job.

    `program` starts the entry script ([python, script] or [python, -m, module]); `flags` say where its config
    comes from (`config_flags`; the original command line is not re-read: its overrides may be a whole sweep);
    `job_overrides` and `hydra_overrides` are this job's (HydraConfig's overrides.task and overrides.hydra). The
    child runs in run mode, in `output_dir`, with no .hydra/ of its own and its own log file, as Lightning's
    launcher does for a single run.
    """
    kept = [o for o in hydra_overrides if not _is_sweep_only(o)]
    return [
        *program,
        *flags,
        *job_overrides,
        *kept,
        f"hydra.run.dir={_quoted(output_dir)}",
        "hydra.output_subdir=null",
        f"hydra.job.name=train_ddp_process_{local_rank}",
    ]


def _program() -> list[str]:
    import __main__

    spec = getattr(__main__, "__spec__", None)
    if spec is None:  # python path/to/script.py
        return [sys.executable, os.path.abspath(sys.argv[0])]
    return [sys.executable, "-m", spec.name]


def _hydra_subprocess_cmd(local_rank: int) -> tuple[list[str], str]:
    """Drop-in for Lightning's `_hydra_subprocess_cmd`: this job's command, in the original working directory."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    hc = HydraConfig.get()
    command = child_command(
        _program(),
        config_flags(hc.job.config_name, hc.runtime.config_sources),
        list(hc.overrides.task),
        list(hc.overrides.hydra),
        str(hc.runtime.output_dir),
        local_rank,
    )
    return command, get_original_cwd()


def _install_launcher_fix() -> None:
    """Point Lightning's launchers (pytorch and fabric, each imported the function by name) at ours."""
    # private: Lightning has no public hook for the command its DDP launcher (_SubprocessScriptLauncher) runs
    from lightning.fabric.strategies.launchers import subprocess_script as fabric_launcher
    from lightning.pytorch.strategies.launchers import subprocess_script as pytorch_launcher

    for module in (fabric_launcher, pytorch_launcher):
        module._hydra_subprocess_cmd = _hydra_subprocess_cmd


def _reset_after_launch() -> None:
    """Forget the process group of a job whose DDP children this process started (they have exited)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def hydra_ddp_job(sweep_dir: str | None) -> Iterator[None]:
    """Run one Hydra job (of a sweep when `sweep_dir` is set) so that DDP children run this job alone.

    Inside: Lightning's launcher starts children with this job's overrides only, and tells them the sweep
    (SMALLVISION_SWEEP_DIR). After: if this process started children, its process group and the launch
    variables are reset, so the sweep's next job launches afresh. A process started by torchrun or SLURM
    (LOCAL_RANK or RANK already set) is left as it is.
    """
    _install_launcher_fix()
    saved = {k: os.environ.get(k) for k in LAUNCH_ENV}
    launched_externally = "LOCAL_RANK" in os.environ
    if sweep_dir is not None and not launched_externally:
        os.environ[SWEEP_DIR_ENV] = sweep_dir
    try:
        yield
    finally:
        if not launched_externally and "LOCAL_RANK" in os.environ:
            _reset_after_launch()
        if not launched_externally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

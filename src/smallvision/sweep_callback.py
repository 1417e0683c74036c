"""The Hydra callback that ends a sweep (`-m`; conf/config.yaml's hydra.callbacks): once every job has finished,
it draws the sweep's comparison into its folder (across seeds, or per backbone: `sweeps.write_sweep_comparison`)
and logs it on the sweep's MLflow run. A job trains and tracks itself only; `pipelines/compare_seeds.py` redraws
the same files from the folder.

Hydra calls it in the launching process (with a launcher such as SLURM's too, on the machine that launched the
sweep) and never in a DDP child, which runs its one job in run mode."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from smallvision.schema import Settings


def publish_sweep(settings: Settings, root: Path, sweep_dir: Path) -> list[Path]:
    """The finished sweep in `sweep_dir` (run from `root` with `settings`, its jobs' shared settings): its
    comparison files, and its rows and files on the sweep's MLflow run (the one its jobs' runs are children of).
    Returns the files written (none when the jobs differ in more than the seed and backbone)."""
    # here, not at module level: Hydra builds this callback for every entry script run, sweep or not
    from smallvision import sweeps, tracking

    files = sweeps.comparison_files(sweep_dir, settings.visualize)
    tracker = tracking.study_tracker(settings, root, "", str(sweep_dir))
    tracker.log_comparison(sweeps.sweep_comparison(sweep_dir), files)
    return files


class SweepComparison(Callback):
    """`hydra.callbacks.sweep_comparison` in conf/config.yaml."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from smallvision.entrypoints import bound_mlflow_requests, load_settings

        root = Path(config.hydra.runtime.cwd)
        # the folder as the jobs resolve it (smallvision.entrypoints.hydra_job), so the MLflow run is theirs
        sweep_dir = (root / str(config.hydra.sweep.dir)).resolve()
        # the jobs' shared settings, without Hydra's own node (whose interpolations need a job's runtime)
        shared = OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])
        settings = load_settings(shared)
        bound_mlflow_requests(settings.logger)
        for path in publish_sweep(settings, root, sweep_dir):
            print(f"sweep comparison: {path}")

"""A Hydra sweep's folder (multirun/<date>/<time>/ with one folder per job): which keys it varies, the
comparison of its jobs across seeds (a seed sweep) or per backbone (a sweep that also varies `backbone`), and the
feature-extract head its fine-tune jobs start from."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from smallvision import evidence
from smallvision.errors import ConfigError, DataError
from smallvision.runs import CHECKPOINT, METRICS, aggregate_seeds, comparison_rows, read_metrics
from smallvision.schema_visualize import Visualize

SEED_SWEEP_KEYS = frozenset({"seed", "technique"})
BACKBONE_SWEEP = ["backbone"]  # what a backbone sweep varies besides the seed and the technique


def multirun_config(sweep_dir: Path) -> DictConfig | None:
    """Hydra's <sweep_dir>/multirun.yaml (written before the first job), None when that file is missing."""
    saved = Path(sweep_dir) / "multirun.yaml"
    return OmegaConf.load(saved) if saved.is_file() else None  # type: ignore[return-value]


def swept_keys(sweep_dir: Path) -> set[str] | None:
    """The config keys a sweep varies (`seed=0,1,2 technique=baseline,augment` -> {"seed", "technique"}), from
    Hydra's <sweep_dir>/multirun.yaml; None when that file is missing."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    saved = multirun_config(sweep_dir)
    if saved is None:
        return None
    task = OmegaConf.select(saved, "hydra.overrides.task", default=[])
    overrides = OverridesParser.create().parse_overrides([str(o) for o in task])
    return {o.key_or_group for o in overrides if o.is_sweep_override()}


def _varies_more_than_the_seed(sweep_dir: Path) -> list[str]:
    """The swept keys besides the seed and the technique (a learning-rate sweep: its jobs must not be averaged)."""
    return sorted((swept_keys(sweep_dir) or set()) - SEED_SWEEP_KEYS)


def sweep_comparison(sweep_dir: Path) -> list[dict]:
    """A sweep's jobs for its MLflow parent: mean and spread per technique across seeds with the mean step from
    the technique before it (`evidence.seed_comparison`; a backbone sweep: per technique and backbone, named
    "<technique>/<backbone>"), or, when the jobs of a technique differ in more than the seed (e.g. a learning-rate
    sweep) or come from different presets or manifests, every job's row."""
    rows = comparison_rows(sweep_dir)
    others = _varies_more_than_the_seed(sweep_dir)
    if others and others != BACKBONE_SWEEP:  # known from the first job on, so no job logs a mean
        return rows
    try:
        if others == BACKBONE_SWEEP:
            evidence.one_study(evidence.runs_in(sweep_dir))
            summary = aggregate_seeds(rows, by=("technique", "backbone"))
            return [{**row, "technique": f"{row['technique']}/{row['backbone']}"} for row in summary]
        return evidence.seed_comparison(evidence.runs_in(sweep_dir))[0]
    except DataError:
        return rows


def _write_seed_sweep(sweep_dir: Path, visualize: Visualize) -> list[Path]:
    """seed_comparison.{json,md,png,html} in `sweep_dir` from its finished jobs: mean, std, min and max of the test
    accuracy across seeds per technique, each seed as a dot, each seed's paired test of each technique against the
    one before it and the mean step over seeds; `visualize` is the visualize settings (the book's reference, its label,
    dpi). Raises DataError when there is no finished job or the jobs differ in more than the seed and the
    technique (the sweep varies another key, a technique has two jobs with the same seed, or the jobs were trained
    with different presets or manifests)."""
    from smallvision.visualize.seed_comparison import write_seed_comparison as write

    runs = evidence.runs_in(sweep_dir)
    rows = [run.metrics for run in runs]
    if not rows:
        raise DataError(
            f"no job folder with a metrics.json in {sweep_dir}: is it a finished sweep's folder "
            "(multirun/<date>/<time>)?"
        )
    others = _varies_more_than_the_seed(sweep_dir)
    if others:
        raise DataError(
            f"the sweep in {sweep_dir} also varies {', '.join(others)}: its jobs differ in more than the "
            "seed and are not averaged (run one seed sweep per setting)"
        )
    steps = evidence.seed_steps(runs)
    return write(
        rows,
        visualize.reference,
        visualize.reference_label,
        Path(sweep_dir),
        dpi=visualize.dpi,
        steps=steps,
    )


def _write_backbone_sweep(sweep_dir: Path, visualize: Visualize) -> list[Path]:
    """backbone_comparison.{json,md,png} in `sweep_dir` from its finished jobs: per backbone and technique the test
    accuracy over the seeds with its interval, seconds per epoch and parameters. Raises DataError when the sweep
    does not vary the backbone (and nothing else besides the seed and the technique), has no finished job, or its
    jobs were trained with different presets or manifests (`evidence.one_study`, as for a seed sweep)."""
    from smallvision.visualize.backbone_comparison import write_backbone_comparison as write

    if _varies_more_than_the_seed(sweep_dir) != BACKBONE_SWEEP:
        raise DataError(
            f"the sweep in {sweep_dir} is not a backbone sweep: it varies {sorted(swept_keys(sweep_dir) or [])}, "
            "a backbone sweep varies backbone (and the seed and technique) only"
        )
    runs = evidence.runs_in(sweep_dir)
    evidence.one_study(runs)
    return write([run.metrics for run in runs], Path(sweep_dir), dpi=visualize.dpi)


def write_sweep_comparison(sweep_dir: Path, visualize: Visualize) -> list[Path]:
    """The comparison a sweep's finished jobs allow, as files in `sweep_dir`: per backbone for a backbone sweep
    (backbone_comparison.*), else across seeds (seed_comparison.*). The figures and tables themselves are
    smallvision.visualize's (`seed_comparison`, `backbone_comparison`)."""
    if _varies_more_than_the_seed(sweep_dir) == BACKBONE_SWEEP:
        return _write_backbone_sweep(sweep_dir, visualize)
    return _write_seed_sweep(sweep_dir, visualize)


def comparison_files(sweep_dir: Path, visualize: Visualize) -> list[Path]:
    """`write_sweep_comparison`, or none when the jobs differ in something else too (the sweep's run then lists
    every job) or none finished."""
    try:
        return write_sweep_comparison(sweep_dir, visualize)
    except DataError:
        return []


def sweep_visualize_config(sweep_dir: Path) -> dict | None:
    """cfg.visualize as the sweep ran it (from Hydra's <sweep_dir>/multirun.yaml), None when that file is missing."""
    cfg = multirun_config(sweep_dir)
    if cfg is None:
        return None
    if "visualize" not in cfg:
        raise DataError(
            f"{Path(sweep_dir) / 'multirun.yaml'} has no visualize section: is {sweep_dir} a smallvision sweep?"
        )
    return OmegaConf.to_container(cfg.visualize, resolve=True)  # type: ignore[return-value]


def sweep_head(sweep_dir: Path, seed: int, backbone: str | None = None) -> Path | None:
    """The feature-extract checkpoint of this sweep's job with the same seed (and backbone, when given: what a
    backbone sweep's fine-tune jobs start from), None when the sweep has no such job. Raises ConfigError when
    several jobs qualify (the sweep varies another key of feature-extract, so which head to start from is
    ambiguous)."""
    jobs = []
    for path in sorted(Path(sweep_dir).glob(f"*/{METRICS}")):
        job = read_metrics(path.parent)
        same = job.get("seed") == seed and (backbone is None or job.get("backbone") == backbone)
        if job.get("technique") == "feature_extract" and same:
            jobs.append(path.parent)
    if len(jobs) > 1:
        raise ConfigError(
            f"the sweep in {sweep_dir} has {len(jobs)} feature_extract jobs with seed {seed}: fine-tune "
            "cannot tell which head to start from; sweep fine-tune separately"
        )
    return jobs[0] / CHECKPOINT if jobs else None

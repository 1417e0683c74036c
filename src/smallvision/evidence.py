"""The comparison as evidence. Which trained techniques make one study (the same preset, seed and manifest:
`smallvision.provenance`), each technique against the one before it in the study order on the same test images
(McNemar's exact test and the accuracy difference with its 95 % interval: `smallvision.stats`), any two runs on
request (pipelines/compare.py), and the same steps across the seeds of a sweep.

Pairing is by test image path (test_predictions.csv); two runs tested on different images are paired only on
request, on the images both were tested on (e.g. a study against its rerun with an exclusion list).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smallvision import provenance
from smallvision.errors import DataError
from smallvision.runs import PREDICTIONS, aggregate_seeds, finished_runs, read_metrics, read_predictions
from smallvision.stats import PairedTest, mean_interval, paired_test

# a comparison row's step against the technique before it (the numbers also land in DVC metrics and MLflow)
STEP_KEYS = (
    "step_from",  # the technique before this one
    "step_gained",  # test images this one gets right and the one before wrong
    "step_lost",  # ... and the reverse
    "step_p_value",  # McNemar's exact test on those two counts
    "step_difference",  # accuracy difference, this one minus the one before (paired images)
    "step_ci95_low",  # its 95 % interval (Newcombe's, paired)
    "step_ci95_high",
    "step_paired_images",
    "step_note",  # why there is no test (the two were tested on different images)
)


@dataclass(frozen=True)
class Run:
    """One finished run: its folder (models/<technique>/ or a sweep job's) and its metrics.json."""

    folder: Path
    metrics: Mapping[str, Any]

    @property
    def technique(self) -> str:
        return str(self.metrics.get("technique", self.folder.name))

    @property
    def label(self) -> str:
        return f"{self.technique} ({self.folder})"


def runs_in(parent: Path) -> list[Run]:
    """Every finished run under `parent` (models/ or a sweep folder), in the study's order."""
    return [Run(folder, metrics) for folder, metrics in finished_runs(parent)]


# ----------------------------------------------------------------------------------------------- two runs


@dataclass(frozen=True)
class Pairing:
    """Right/wrong of two runs on the test images they are paired on (sorted by path), and how many test images
    each run had (more than the paired ones only when pairing on the images in common)."""

    first_correct: list[bool]
    second_correct: list[bool]
    first_images: int
    second_images: int


def paired_correctness(first: Run, second: Run, *, common: bool = False) -> Pairing:
    """Right/wrong per test image of two runs, paired by image path. Raises DataError when a run has no
    predictions, when the two were tested on different images (`common`: pair them on the images both were
    tested on instead; DataError when there are none) or when they give a paired image different labels."""
    predictions = []
    for run in (first, second):
        path = run.folder / PREDICTIONS
        if not path.is_file():
            raise DataError(f"{path} not found: {run.technique} has no per-image test results; rerun its training")
        predictions.append({row.path: row for row in read_predictions(path)})
    a, b = predictions
    only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
    if (only_a or only_b) and not common:
        raise DataError(
            f"{first.label} and {second.label} were tested on different images ({len(only_a)} only in the first, "
            f"{len(only_b)} only in the second, e.g. {(only_a or only_b)[0]}): they cannot be paired; train both "
            "on one split, or pair them on the test images both have (compare.py --common)"
        )
    paths = sorted(a.keys() & b.keys())
    if not paths:
        raise DataError(f"{first.label} and {second.label} have no test image in common: they cannot be paired")
    relabelled = [path for path in paths if a[path].actual != b[path].actual]
    if relabelled:
        raise DataError(
            f"{first.label} and {second.label} give {len(relabelled)} test images different labels "
            f"(e.g. {relabelled[0]}): they were trained on different manifests and cannot be paired"
        )
    return Pairing([a[p].correct for p in paths], [b[p].correct for p in paths], len(a), len(b))


def compare(first: Run, second: Run, *, common: bool = False) -> PairedTest:
    """`second` against `first` on their test images (DataError when those differ, unless `common`: then on
    the images both were tested on)."""
    pairing = paired_correctness(first, second, common=common)
    return paired_test(pairing.first_correct, pairing.second_correct)


def step_fields(previous: Run, run: Run) -> dict[str, Any]:
    """`run` against `previous` as a comparison row's step_* values (STEP_KEYS); a step_note instead of a test
    when the two cannot be paired."""
    try:
        test = compare(previous, run)
    except DataError as err:
        return {"step_from": previous.technique, "step_note": f"not paired: {err}"}
    return {
        "step_from": previous.technique,
        "step_gained": test.only_second,
        "step_lost": test.only_first,
        "step_p_value": test.p_value,
        "step_difference": test.difference,
        "step_ci95_low": test.ci95_low,
        "step_ci95_high": test.ci95_high,
        "step_paired_images": test.n,
    }


# ----------------------------------------------------------------------------------------------- one study


@dataclass
class StudyComparison:
    """The rows of one study's comparison (metrics.json with each technique's step against the one before it),
    the runs left out (technique -> why) and notes on rows kept without recorded provenance."""

    rows: list[dict] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def messages(self) -> list[str]:
        """One line per run left out or kept unchecked, for a report or a log."""
        left_out = [
            f"{technique}: left out of this study's comparison, {why}" for technique, why in self.excluded.items()
        ]
        return left_out + self.notes


def with_steps(runs: Sequence[Run]) -> list[dict]:
    """Each run's metrics.json as a row, with its step against the run before it (the first has none)."""
    rows = []
    for k, run in enumerate(runs):
        rows.append({**run.metrics, **(step_fields(runs[k - 1], run) if k else {})})
    return rows


def study_comparison(
    models_dir: Path, expected: Mapping[str, Any] | None, techniques: Collection[str] | None = None
) -> StudyComparison:
    """The comparison of the techniques trained under `models_dir` (only those in `techniques`, when given) that
    belong to the study `expected` (`provenance.identity`; None: every run): a run trained with another preset,
    seed or manifest is left out with the reason, never mixed in; a run that records no provenance is kept with
    a note."""
    result = StudyComparison()
    kept = []
    for run in runs_in(models_dir):
        if techniques is not None and run.technique not in techniques:
            continue
        why = provenance.mismatch(run.metrics, expected) if expected is not None else None
        if why:
            result.excluded[run.technique] = f"{why} (rerun its training stage: dvc repro)"
            continue
        missing = provenance.unrecorded(run.metrics)
        if expected is not None and missing:
            result.notes.append(
                f"{run.technique}: its metrics.json records no {', '.join(missing)} (trained before provenance was "
                "recorded): not checked against this study; rerun its training stage"
            )
        kept.append(run)
    result.rows = with_steps(kept)
    return result


# ----------------------------------------------------------------------------------------------- seeds


@dataclass
class SeedSteps:
    """A seed sweep's steps: one paired test per seed and step (`per_seed`), and per technique (its step against
    the technique before it) the mean difference over seeds with a t interval and the per-seed p-values."""

    per_seed: list[dict] = field(default_factory=list)
    summary: dict[str, dict] = field(default_factory=dict)


def one_study(runs: Sequence[Run]) -> None:
    """Raises DataError unless the runs are one study but for their seeds: each records its seed and all were
    trained with one preset on one manifest (what a sweep's comparison checks before it averages over seeds)."""
    unseeded = [run.label for run in runs if "seed" not in run.metrics]
    if unseeded:
        raise DataError(f"{unseeded[0]} records no seed: rerun its training job")
    for key in ("preset", "manifest"):
        values = {str(run.metrics[key]) for run in runs if key in run.metrics}
        if len(values) > 1:
            raise DataError(
                f"the jobs were trained with different {key}s ({', '.join(sorted(values))}):"
                " their seeds are not one study and are not averaged; run one sweep per setting"
            )


def seed_steps(runs: Sequence[Run]) -> SeedSteps:
    """The steps between consecutive techniques (in the study order) for each seed that has both, and their mean
    over seeds. Raises DataError when the runs come from different presets or manifests."""
    one_study(runs)
    by_seed: dict[int, dict[str, Run]] = {}
    for run in runs:
        by_seed.setdefault(int(run.metrics["seed"]), {})[run.technique] = run
    order = list(dict.fromkeys(run.technique for run in runs))  # runs are in the study's order
    steps = SeedSteps()
    for previous, technique in itertools.pairwise(order):
        tests = []
        for seed in sorted(by_seed):
            pair = by_seed[seed].get(previous), by_seed[seed].get(technique)
            if None in pair:
                continue
            try:
                test = compare(*pair)
            except DataError as err:  # listed, not averaged: one unpairable seed must not hide the others
                steps.per_seed.append({"seed": seed, "from": previous, "to": technique, "note": f"not paired: {err}"})
                continue
            tests.append(test)
            kept = {"kept_start": True} if pair[1].metrics.get("kept_start") is True else {}  # why a step is zero
            steps.per_seed.append({"seed": seed, "from": previous, "to": technique, **test.as_dict(), **kept})
        if tests:
            mean, low, high = mean_interval([t.difference for t in tests])
            steps.summary[technique] = {
                "step_from": previous,
                "step_seeds": len(tests),
                "step_difference_mean": mean,
                "step_difference_ci95_low": low,
                "step_difference_ci95_high": high,
                "step_p_value_max": max(t.p_value for t in tests),
                "step_p_values": [t.p_value for t in tests],
            }
    return steps


def seed_comparison(runs: Sequence[Run], metric: str = "test_accuracy") -> tuple[list[dict], SeedSteps]:
    """A seed sweep's aggregate (`aggregate_seeds`: mean, std, min, max and each seed's value per technique) with
    each technique's mean step over seeds, and the per-seed paired tests. Raises DataError as `aggregate_seeds`
    does and when the runs come from different presets or manifests."""
    rows = aggregate_seeds([run.metrics for run in runs], metric)
    steps = seed_steps(runs)
    return [{**row, **steps.summary.get(row["technique"], {})} for row in rows], steps


# ----------------------------------------------------------------------------------------------- on request


def run_at(path: Path, models_dir: Path) -> Run:
    """A finished run named by its folder (models/augment, a sweep's job folder) or by its technique (augment:
    `models_dir`/augment)."""
    folder = Path(path) if Path(path).is_dir() else Path(models_dir) / str(path)
    return Run(folder, read_metrics(folder))


def compare_report(first: Run, second: Run, *, common: bool = False) -> dict[str, Any]:
    """`second` against `first` (`compare`; `common`: on the test images both have) with both runs' provenance,
    what differs in it and how many test images each run had, as plain values."""
    pairing = paired_correctness(first, second, common=common)
    test = paired_test(pairing.first_correct, pairing.second_correct)
    keys = ("technique", *provenance.FIELDS)
    origin = {name: {k: run.metrics.get(k) for k in keys} for name, run in (("first", first), ("second", second))}
    differ = [k for k in provenance.IDENTITY if origin["first"][k] != origin["second"][k]]
    return {
        "first": str(first.folder),
        "second": str(second.folder),
        **test.as_dict(),
        "first_accuracy": test.first_accuracy,
        "second_accuracy": test.second_accuracy,
        "common": common,
        "first_test_images": pairing.first_images,
        "second_test_images": pairing.second_images,
        "provenance": origin,
        "provenance_differs": differ,
    }


def compare_lines(report: Mapping[str, Any]) -> list[str]:
    """`compare_report` as the lines the compare command prints."""
    a, b = report["provenance"]["first"]["technique"], report["provenance"]["second"]["technique"]
    title = f"{b} ({report['second']}) against {a} ({report['first']})"
    if a == b:  # one technique in two studies (e.g. without and with an exclusion list): name each by its folder
        title, a, b = f"{a}: {report['second']} against {report['first']}", report["first"], report["second"]
    counts = f"right with both {report['both']}, only {a} {report['only_first']}, only {b} {report['only_second']}"
    interval = f"{100 * report['ci95_low']:+.1f} to {100 * report['ci95_high']:+.1f}"
    lines = [
        f"{title}, on {report['n']} paired test images:",
        f"  accuracy: {a} {100 * report['first_accuracy']:.1f} %, {b} {100 * report['second_accuracy']:.1f} %",
        f"  {counts}, neither {report['neither']}",
        f"  difference {100 * report['difference']:+.1f} points (95 % interval {interval}, Newcombe, paired)",
        f"  McNemar's exact test: p = {report['p_value']:.4g}",
    ]
    if report.get("common"):
        lines.insert(
            1,
            f"  test images: {a} {report['first_test_images']}, {b} {report['second_test_images']}; paired on the "
            f"{report['n']} both were tested on (the others are left out)",
        )
    for key in report["provenance_differs"]:
        values = [report["provenance"][side][key] for side in ("first", "second")]
        lines.append(f"  note: the two differ in {key}: {values[0]} and {values[1]}")
    return lines

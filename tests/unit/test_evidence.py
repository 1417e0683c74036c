"""The comparison as evidence (smallvision.evidence): pairing by test image path, one study per comparison (preset,
seed, manifest), the seed aggregate of a sweep and the figure's p-values. The statistics: unit/test_stats.py; the
compare command: e2e/test_study.py; the same numbers in DVC metrics and MLflow: unit/tracking/test_tracker.py and
e2e/test_pipeline.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.fake_runs import MANIFEST, fake_run, table
from helpers.study import config

from smallvision import evidence, sweeps
from smallvision.errors import DataError
from smallvision.stats import mcnemar_exact, mean_interval

# --------------------------------------------------------------------------------------------- one study


def test_study_comparison_pairs_by_path_and_leaves_out_another_preset(tmp_path):
    models = tmp_path / "models"
    base, aug = table(both=60, only_first=5, only_second=15, neither=20)
    fake_run(models / "baseline", "baseline", base)
    fake_run(models / "augment", "augment", aug, order=1)  # rows in another order: paired by path
    _, fe = table(both=70, only_first=10, only_second=8, neither=12)
    fake_run(models / "feature_extract", "feature_extract", fe, preset="default")  # the direct run
    fake_run(models / "fine_tune", "fine_tune", fe, manifest="ffffffffffff")

    study = evidence.study_comparison(models, {"preset": "quick", "seed": 42, "manifest": MANIFEST})
    assert [row["technique"] for row in study.rows] == ["baseline", "augment"]
    assert "step_from" not in study.rows[0]
    augment = study.rows[1]
    assert (augment["step_from"], augment["step_gained"], augment["step_lost"]) == ("baseline", 15, 5)
    assert augment["step_p_value"] == pytest.approx(mcnemar_exact(5, 15))
    assert augment["step_difference"] == pytest.approx(0.10) and augment["step_paired_images"] == 100
    assert study.excluded == {
        "feature_extract": "trained with preset default, not this study's preset quick (rerun its training stage: "
        "dvc repro)",
        "fine_tune": f"trained with manifest ffffffffffff, not this study's manifest {MANIFEST} (rerun its training "
        "stage: dvc repro)",
    }
    assert study.messages()[0].startswith("feature_extract: left out of this study's comparison, trained with preset")
    # without a study to check against (any two runs), every run is a row
    assert len(evidence.study_comparison(models, None).rows) == 4


def test_runs_tested_on_different_images_are_never_paired(tmp_path):
    first = fake_run(tmp_path / "a", "baseline", [True] * 10)
    second = fake_run(tmp_path / "b", "augment", [True] * 11)
    runs = evidence.runs_in(tmp_path)
    with pytest.raises(DataError, match=r"tested on different images \(0 only in the first, 1 only in the second"):
        evidence.compare(*runs)
    row = evidence.with_steps(runs)[1]
    assert row["step_note"].startswith("not paired:") and "step_p_value" not in row
    (second / "test_predictions.csv").unlink()
    with pytest.raises(DataError, match="test_predictions.csv not found"):
        evidence.compare(evidence.Run(first, {}), evidence.Run(second, {}))


def test_runs_of_two_splits_pair_on_their_common_test_images_only_when_asked(tmp_path):
    """A study against its rerun with an exclusion list: the rerun lost img_000-img_009 and gained img_100-img_104."""
    first = fake_run(tmp_path / "a" / "models" / "fine_tune", "fine_tune", [True] * 50 + [False] * 50)
    second = fake_run(tmp_path / "b" / "models" / "fine_tune", "fine_tune", [True] * 105, manifest="ffffffffffff")
    kept = (second / "test_predictions.csv").read_text().splitlines()
    (second / "test_predictions.csv").write_text("\n".join(r for r in kept if not r.startswith("img_00")) + "\n")
    runs = evidence.Run(first, {"technique": "fine_tune"}), evidence.Run(second, {"technique": "fine_tune"})
    with pytest.raises(DataError, match=r"10 only in the first, 5 only in the second.*\(compare.py --common\)"):
        evidence.compare(*runs)
    pairing = evidence.paired_correctness(*runs, common=True)
    assert (len(pairing.first_correct), pairing.first_images, pairing.second_images) == (90, 100, 95)
    test = evidence.compare(*runs, common=True)  # img_010-img_099: 40 right with the first, all 90 with the second
    assert (test.n, test.both, test.only_first, test.only_second, test.neither) == (90, 40, 0, 50, 0)


def test_common_pairing_still_refuses_a_relabelled_or_disjoint_test_set(tmp_path):
    first = fake_run(tmp_path / "a", "baseline", [True] * 10)
    relabelled = fake_run(tmp_path / "b", "augment", [True] * 12)
    rows = (relabelled / "test_predictions.csv").read_text().replace("img_003.jpg,dog,dog", "img_003.jpg,cat,cat")
    (relabelled / "test_predictions.csv").write_text(rows)
    with pytest.raises(DataError, match=r"give 1 test images different labels \(e.g. img_003.jpg\)"):
        evidence.compare(evidence.Run(first, {}), evidence.Run(relabelled, {}), common=True)
    disjoint = fake_run(tmp_path / "c", "augment", [True] * 4)
    rows = (disjoint / "test_predictions.csv").read_text().replace("img_", "other_")
    (disjoint / "test_predictions.csv").write_text(rows)
    with pytest.raises(DataError, match="have no test image in common"):
        evidence.compare(evidence.Run(first, {}), evidence.Run(disjoint, {}), common=True)


def test_unrecorded_provenance_is_kept_with_a_note(tmp_path):
    fake_run(tmp_path / "models" / "baseline", "baseline", [True, False], preset=None)
    metrics = tmp_path / "models" / "baseline" / "metrics.json"
    metrics.write_text(json.dumps({k: v for k, v in json.loads(metrics.read_text()).items() if k != "preset"}))
    study = evidence.study_comparison(tmp_path / "models", {"preset": "quick", "seed": 42, "manifest": MANIFEST})
    assert len(study.rows) == 1 and not study.excluded
    (note,) = study.notes
    assert note.startswith("baseline: its metrics.json records no preset (trained before provenance was recorded)")


# --------------------------------------------------------------------------------------------- figure, files


def test_comparison_figure_shows_each_steps_difference_and_p_value(tmp_path):
    from smallvision.visualize import comparison

    models = tmp_path / "models"
    base, aug = table(both=60, only_first=5, only_second=15, neither=20)
    fake_run(models / "baseline", "baseline", base, ci95_low=0.55, ci95_high=0.74)
    fake_run(models / "augment", "augment", aug, ci95_low=0.66, ci95_high=0.83)
    _, fe = table(both=74, only_first=1, only_second=25, neither=0)
    fake_run(models / "feature_extract", "feature_extract", fe, ci95_low=0.92, ci95_high=1.0)
    rows = evidence.study_comparison(models, None).rows
    table_rows = comparison.comparison_table(rows, {"baseline": 0.71})
    fig = comparison.comparison_figure(table_rows, "Chollet", chance=0.5)
    (ax,) = fig.axes
    steps = [t.get_text() for t in ax.texts if t.get_gid() == "step"]
    assert steps == [
        f"+10.0 pts\np = {mcnemar_exact(5, 15):.3f}",
        "+24.0 pts\np < 0.001",
    ]
    assert max(ax.get_yticks()) <= 1.0 < ax.get_ylim()[1]  # room above the bars, no tick above 100 %
    json_path, md_path = comparison.write_comparison(table_rows, "Chollet", tmp_path / "reports", {"x": "why"})
    md = md_path.read_text().splitlines()
    assert md[0].startswith("| technique | backbone | test accuracy | 95 % interval | test images | step from |")
    assert md[3].startswith("| augment | — | 75.0 % | 66.0 % – 83.0 % | 100 | baseline | +15 / −5 | +10.0 pts (")
    assert md[3].endswith(f"| {mcnemar_exact(5, 15):.3f} | — | — |")
    assert "| feature_extract | quick | 42 | — | 0123456789ab | — | — | — |" in md
    assert md[-1] == "- x: why"
    assert json.loads(json_path.read_text())["excluded"] == {"x": "why"}


# --------------------------------------------------------------------------------------------- seeds


def _sweep(folder: Path, tables: dict[int, tuple[int, int, int, int]], manifest: str = MANIFEST) -> Path:
    """A seed sweep's job folders: per seed, baseline and augment with the given 2 x 2 table."""
    job = 0
    for technique in ("baseline", "augment"):
        for seed, counts in tables.items():
            first, second = table(*counts)
            fake_run(
                folder / str(job), technique, first if technique == "baseline" else second, seed=seed, manifest=manifest
            )
            job += 1
    return folder


def test_seed_aggregate_on_fake_per_seed_outputs(tmp_path):
    tables = {0: (60, 5, 15, 20), 1: (62, 6, 12, 20), 2: (58, 8, 16, 18)}  # augment +10, +6, +8 points
    sweep = _sweep(tmp_path / "sweep", tables)
    rows, steps = evidence.seed_comparison(evidence.runs_in(sweep))
    baseline, augment = rows
    assert (baseline["technique"], baseline["n_seeds"], "step_from" in baseline) == ("baseline", 3, False)
    assert baseline["test_accuracy_values"] == [0.65, 0.68, 0.66]
    assert augment["test_accuracy_mean"] == pytest.approx((0.75 + 0.74 + 0.74) / 3)
    assert [(t["seed"], t["only_first"], t["only_second"]) for t in steps.per_seed] == [
        (0, 5, 15),
        (1, 6, 12),
        (2, 8, 16),
    ]
    mean, low, high = mean_interval([0.10, 0.06, 0.08])
    assert augment["step_from"] == "baseline" and augment["step_seeds"] == 3
    assert (augment["step_difference_mean"], augment["step_difference_ci95_low"]) == pytest.approx((mean, low))
    assert augment["step_difference_ci95_high"] == pytest.approx(high)
    assert augment["step_p_values"] == pytest.approx([mcnemar_exact(*c[1:3]) for c in tables.values()])
    assert augment["step_p_value_max"] == pytest.approx(max(augment["step_p_values"]))

    # the sweep's files, its report page and its MLflow rows carry the same
    visualize = config("visualize.dpi=30").visualize.model_copy(
        update={"reference": {"baseline": 0.71}, "reference_label": "the book"}
    )
    paths = sweeps.write_sweep_comparison(sweep, visualize)
    md = paths[1].read_text()
    assert "| baseline → augment | 3 | +8.0 pts |" in md
    assert "| 1 | baseline → augment | +12 / −6 | +6.0 pts (" in md
    assert "baseline → augment" in paths[3].read_text()
    assert sweeps.sweep_comparison(sweep)[1]["step_difference_mean"] == pytest.approx(mean)


def test_a_seed_whose_fine_tune_kept_its_start_says_why_its_step_is_zero(tmp_path):
    """fine-tune kept feature-extract's head in seed 1 (no epoch beat it on validation): the same predictions, a
    zero step, and the per-seed table says why."""
    sweep = tmp_path / "sweep"
    head, tuned = table(both=90, only_first=2, only_second=5, neither=3)
    for job, (seed, fine_tune, kept) in enumerate([(0, tuned, False), (1, head, True)]):
        fake_run(sweep / str(2 * job), "feature_extract", head, seed=seed)
        fake_run(sweep / str(2 * job + 1), "fine_tune", fine_tune, seed=seed, kept_start=kept, best_epoch=int(not kept))
    _, steps = evidence.seed_comparison(evidence.runs_in(sweep))
    assert [(t["seed"], t["only_first"], t["only_second"], t.get("kept_start")) for t in steps.per_seed] == [
        (0, 2, 5, None),
        (1, 0, 0, True),
    ]
    visualize = config("visualize.dpi=30").visualize.model_copy(update={"reference": {}, "reference_label": "the book"})
    md = sweeps.write_sweep_comparison(sweep, visualize)[1]
    assert "| 1 | feature_extract → fine_tune (kept its start) | +0 / −0 | +0.0 pts (" in md.read_text()


def test_seeds_of_different_manifests_are_not_averaged(tmp_path):
    sweep = _sweep(tmp_path / "sweep", {0: (60, 5, 15, 20)})
    _sweep(tmp_path / "other", {1: (60, 5, 15, 20)}, manifest="ffffffffffff")
    for job in (tmp_path / "other").iterdir():
        job.rename(sweep / str(int(job.name) + 10))
    with pytest.raises(DataError, match="different manifests"):
        evidence.seed_comparison(evidence.runs_in(sweep))
    assert len(sweeps.sweep_comparison(sweep)) == 4  # the parent lists every job instead

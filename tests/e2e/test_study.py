"""The study's MLflow run and the seed-study command, run for real (trainings, a Hydra multirun)."""

from __future__ import annotations

import json

import pytest
from helpers import ROOT
from helpers.entry import entry_script
from helpers.fake_runs import MANIFEST, fake_run, table
from helpers.study import config, make_dataset

from smallvision.stats import mcnemar_exact

# --------------------------------------------------------------------------------------------- the study's MLflow run


@pytest.mark.slow  # ~7 s idle (two trainings and a new MLflow store); the filter itself is tested above
def test_a_direct_run_of_another_preset_stays_off_the_study_run(tmp_path, monkeypatch, caplog):
    """The issue's reproduction: a study trained with one preset, then one technique run directly with another;
    the other preset's study run must not show the first preset's techniques."""
    from mlflow import MlflowClient

    from smallvision.job import run_training

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the project's own store, tmp_path/mlflow.db
    project = make_dataset(tmp_path, per_class=12)
    fast = ("logger.enabled=true", "techniques.baseline.epochs=1", "techniques.augment.epochs=1")
    run_training(config("technique=baseline", *fast), project)  # the smoke study
    run_training(config("technique=augment", "preset=default", *fast), project)  # a direct run, another preset
    client = MlflowClient(f"sqlite:///{tmp_path.as_posix()}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("smallvision").experiment_id])
    parents = {r.info.run_name: r.data.metrics for r in runs if "mlflow.parentRunId" not in r.data.tags}
    assert {key.split(".")[0] for key in parents["study default (synthetic, seed 42)"]} == {"augment"}
    assert {key.split(".")[0] for key in parents["study smoke (synthetic, seed 42)"]} == {"baseline"}
    assert "baseline: left out of this study's comparison, trained with preset smoke" in caplog.text


@pytest.mark.slow  # ~1-2 min: the whole study's four techniques for two seeds, in one Hydra multirun
def test_the_seed_study_command_writes_the_aggregate_with_its_paired_tests(tmp_path):
    """The README's seeds command on generated images: every technique for each seed, then the aggregate."""
    import sys

    from helpers.project import run
    from mlflow import MlflowClient

    project = make_dataset(tmp_path, per_class=12)
    sweep = tmp_path / "multirun" / "seeds"
    command = [sys.executable, str(ROOT / "pipelines" / "train.py"), "-m", "preset=smoke"]
    command += ["technique=baseline,augment,feature_extract,fine_tune", "seed=0,1", f"hydra.sweep.dir={sweep}"]
    run(command, project)
    saved = json.loads((sweep / "seed_comparison.json").read_text())
    assert [(r["technique"], r["n_seeds"]) for r in saved["rows"]] == [
        ("baseline", 2),
        ("augment", 2),
        ("feature_extract", 2),
        ("fine_tune", 2),
    ]
    assert [r.get("step_from") for r in saved["rows"]] == [None, "baseline", "augment", "feature_extract"]
    tests = [(t["seed"], t["to"], t["n"]) for t in saved["per_seed"]]
    assert sorted(tests) == sorted((s, t, 6) for s in (0, 1) for t in ("augment", "feature_extract", "fine_tune"))
    assert (sweep / "seed_comparison.html").stat().st_size > 0
    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("smallvision").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    fine_tune = saved["rows"][3]
    assert parent.data.metrics["fine_tune.step_difference_mean"] == pytest.approx(fine_tune["step_difference_mean"])
    assert parent.data.metrics["fine_tune.step_p_value_max"] == pytest.approx(fine_tune["step_p_value_max"])


def _compare(*argv: str) -> None:
    entry_script("compare").main(list(argv))


def test_compare_command_tests_any_two_runs(tmp_path, capsys):
    base, aug = table(both=60, only_first=5, only_second=15, neither=20)
    fake_run(tmp_path / "models" / "baseline", "baseline", base)
    other = fake_run(tmp_path / "sweep" / "3", "augment", aug, seed=7)
    _compare("baseline", str(other), "--models", str(tmp_path / "models"))
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0] == f"augment ({other}) against baseline ({tmp_path / 'models' / 'baseline'}), on 100 paired test images:"
    )
    assert out[1:3] == [
        "  accuracy: baseline 65.0 %, augment 75.0 %",
        "  right with both 60, only baseline 5, only augment 15, neither 20",
    ]
    assert out[4] == f"  McNemar's exact test: p = {mcnemar_exact(5, 15):.4g}"
    assert out[5] == "  note: the two differ in seed: 42 and 7"
    _compare("baseline", str(other), "--models", str(tmp_path / "models"), "--json")
    saved = json.loads(capsys.readouterr().out)
    assert (saved["only_first"], saved["only_second"], saved["provenance_differs"]) == (5, 15, ["seed"])

    fake_run(tmp_path / "models" / "small", "small", [True] * 5)
    with pytest.raises(SystemExit) as exit_info:  # different test sets: one line, status 2
        _compare("baseline", "small", "--models", str(tmp_path / "models"))
    assert exit_info.value.code == 2
    assert "were tested on different images" in capsys.readouterr().err


def test_compare_common_pairs_one_technique_of_two_studies_on_their_shared_test_images(tmp_path, capsys):
    """A study against its rerun with an exclusion list, named by their model folders: the rerun's test set lost
    img_000 and img_001 (excluded); img_100 stands for a test image only one of the runs has."""
    old = fake_run(tmp_path / "old" / "models" / "fine_tune", "fine_tune", [True] * 80 + [False] * 20)
    new = fake_run(tmp_path / "new" / "models" / "fine_tune", "fine_tune", [True] * 101, manifest="ffffffffffff")
    rows = (new / "test_predictions.csv").read_text().splitlines()
    (new / "test_predictions.csv").write_text("\n".join(r for r in rows if r[:7] not in {"img_000", "img_001"}))
    with pytest.raises(SystemExit):  # without --common: refused, and the refusal names the option
        _compare(str(old), str(new))
    assert "(compare.py --common)" in capsys.readouterr().err
    _compare("--common", str(old), str(new))
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [
        f"fine_tune: {new} against {old}, on 98 paired test images:",
        f"  test images: {old} 100, {new} 99; paired on the 98 both were tested on (the others are left out)",
        f"  accuracy: {old} 79.6 %, {new} 100.0 %",
    ]
    assert out[-1] == f"  note: the two differ in manifest: {MANIFEST} and ffffffffffff"
    _compare("--common", str(old), str(new), "--json")
    saved = json.loads(capsys.readouterr().out)
    assert (saved["n"], saved["first_test_images"], saved["second_test_images"], saved["common"]) == (98, 100, 99, True)

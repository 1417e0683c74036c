"""Sweeps run for real: Hydra multiruns (seeds, backbones, DDP jobs) and a DVC queue, as subprocesses on generated
images, with their MLflow runs and comparisons."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT
from helpers.entry import entry_script
from helpers.fake_runs import BOOK, LITES, SEED_ROWS, SWEEP, backbone_sweep
from helpers.project import compose_params, copy_project, run
from helpers.study import config, make_dataset

from smallvision.runs import aggregate_seeds

TRAIN = str(ROOT / "pipelines" / "train.py")
# tiny and fast: 64 px, one epoch, no progress bars
QUICK = [
    "data=synthetic",
    "trainer.progress=false",
    "techniques.baseline.image_size=64",
    "techniques.augment.image_size=64",
    "techniques.baseline.epochs=1",
    "techniques.augment.epochs=1",
]


# --------------------------------------------------------------------------------------------- multirun


def _job_dirs(project: Path) -> list[Path]:
    """The job folders of the one sweep under multirun/ (there must be exactly one sweep)."""
    (sweep,) = [p.parent for p in (project / "multirun").rglob("multirun.yaml")]
    assert len([p for p in (project / "multirun").glob("*/*") if p.is_dir()]) == 1
    return sorted((p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: int(p.name))


def _runs(project: Path) -> tuple[list, list]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("smallvision").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parents, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


@pytest.mark.slow  # ~25 s: tests/e2e/test_ddp.py holds DDP on 2 CPU processes, tests/unit the sweep's comparison
def test_a_ddp_seed_sweep_runs_each_job_once_and_compares_the_seeds(tmp_path):
    """Short version of the slower tests below: `-m technique=baseline seed=0,1 trainer=ddp_cpu` gives one job
    folder and MLflow run per seed, each job trained once on 2 processes, and the seed comparison (mean, std, min,
    max across seeds) in the sweep folder and on the sweep's run."""
    project = make_dataset(tmp_path, per_class=12)
    result = run([sys.executable, TRAIN, "-m", "technique=baseline", "seed=0,1", "trainer=ddp_cpu", *QUICK], project)
    # a DDP child that re-ran the whole sweep would launch it again
    assert (result.stdout + result.stderr).count("Launching 2 jobs locally") == 1
    assert result.stdout.count("baseline: test accuracy") == 2  # rank 0 of each job

    jobs = _job_dirs(project)  # children made no sweep folder of their own
    assert [j.name for j in jobs] == ["0", "1"]
    for job in jobs:
        assert (job / "train_ddp_process_1.log").exists()  # rank 1 ran in this job's folder
    rows = [json.loads((j / "metrics.json").read_text()) for j in jobs]
    assert [(r["technique"], r["seed"], r["test_images"]) for r in rows] == [("baseline", 0, 6), ("baseline", 1, 6)]
    assert not (project / "models").exists()  # a sweep writes into its job folders only

    sweep = jobs[0].parent
    (saved,) = json.loads((sweep / "seed_comparison.json").read_text())["rows"]
    accuracies = [r["test_accuracy"] for r in rows]
    assert (saved["technique"], saved["n_seeds"], saved["seeds"]) == ("baseline", 2, [0, 1])
    assert saved["test_accuracy_values"] == accuracies
    assert saved["test_accuracy_mean"] == pytest.approx(sum(accuracies) / 2)
    assert saved["test_accuracy_std"] == pytest.approx(abs(accuracies[0] - accuracies[1]) / 2**0.5)  # n - 1
    assert (saved["test_accuracy_min"], saved["test_accuracy_max"]) == (min(accuracies), max(accuracies))
    assert saved["reference"] == BOOK["baseline"]
    md = (sweep / "seed_comparison.md").read_text().splitlines()
    assert md[2].startswith("| baseline | 2 (0, 1) |")
    assert (sweep / "seed_comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    parents, children = _runs(project)
    assert len(parents) == 1 and len(children) == 2
    assert sorted(c.data.tags["seed"] for c in children) == ["0", "1"]
    assert all(c.info.status == "FINISHED" for c in children)
    assert parents[0].data.metrics["baseline.n_seeds"] == 2
    assert parents[0].data.metrics["baseline.test_accuracy_mean"] == pytest.approx(saved["test_accuracy_mean"])
    from mlflow.tracking import MlflowClient

    artifacts = {a.path for a in MlflowClient(f"sqlite:///{project}/mlflow.db").list_artifacts(parents[0].info.run_id)}
    assert {"seed_comparison.json", "seed_comparison.md", "seed_comparison.png", "comparison.json"} <= artifacts
    # each job's network is logged, but a sweep moves no champion: the registry's alias stays the DVC study's
    assert all(c.outputs.model_outputs for c in children)
    assert MlflowClient(f"sqlite:///{project}/mlflow.db").search_registered_models() == []


@pytest.mark.slow  # ~25-40 s: a subprocess, 6 trainings and an MLflow store
def test_multirun_gives_one_job_folder_and_run_per_combination(tmp_path):
    project = make_dataset(tmp_path, per_class=12)
    result = run([sys.executable, TRAIN, "-m", "technique=baseline,augment", "seed=0,1,2", *QUICK], project)
    assert (result.stdout + result.stderr).count("Launching 6 jobs locally") == 1

    jobs = _job_dirs(project)
    assert [j.name for j in jobs] == [str(i) for i in range(6)]
    rows = [json.loads((j / "metrics.json").read_text()) for j in jobs]
    assert sorted((r["technique"], r["seed"]) for r in rows) == sorted(
        (t, s) for t in ("baseline", "augment") for s in (0, 1, 2)
    )
    assert not (project / "models").exists()  # a sweep writes into its job folders only

    parents, children = _runs(project)
    assert len(parents) == 1 and len(children) == 6
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert sorted((c.data.tags["technique"], c.data.tags["seed"]) for c in children) == sorted(
        (r["technique"], str(r["seed"])) for r in rows
    )
    # the sweep's run carries the spread across seeds of each technique
    summary = {s["technique"]: s for s in aggregate_seeds(rows)}
    assert parents[0].data.metrics["augment.n_seeds"] == 3
    assert parents[0].data.metrics["baseline.test_accuracy_mean"] == pytest.approx(
        summary["baseline"]["test_accuracy_mean"]
    )
    # ... and the seed comparison, in the sweep folder and on the sweep's run
    sweep = jobs[0].parent
    files = ("seed_comparison.json", "seed_comparison.md", "seed_comparison.png")
    assert all((sweep / name).stat().st_size > 0 for name in files)
    saved = json.loads((sweep / "seed_comparison.json").read_text())
    assert [(r["technique"], r["n_seeds"]) for r in saved["rows"]] == [("baseline", 3), ("augment", 3)]
    assert saved["rows"][1]["test_accuracy_std"] == pytest.approx(summary["augment"]["test_accuracy_std"])
    from mlflow.tracking import MlflowClient

    artifacts = {a.path for a in MlflowClient(f"sqlite:///{project}/mlflow.db").list_artifacts(parents[0].info.run_id)}
    assert set(files) | {"comparison.json"} <= artifacts


@pytest.mark.slow
def test_multirun_with_ddp_runs_each_job_once_on_two_processes(tmp_path):
    project = make_dataset(tmp_path, per_class=12)
    result = run([sys.executable, TRAIN, "-m", "technique=baseline,augment", "trainer=ddp_cpu", *QUICK], project)
    # a child that re-ran the whole sweep would launch it again
    assert (result.stdout + result.stderr).count("Launching 2 jobs locally") == 1
    assert result.stdout.count("test accuracy") == 2  # rank 0 of each job

    jobs = _job_dirs(project)  # children made no sweep folder of their own
    assert [j.name for j in jobs] == ["0", "1"]
    for job in jobs:
        assert (job / "metrics.json").exists() and (job / "train_ddp_process_1.log").exists()  # rank 1 ran here
    sweep = yaml.safe_load((jobs[0].parent / "multirun.yaml").read_text())
    assert sweep["hydra"]["job"]["name"] == "train"  # not rewritten by a child

    parents, children = _runs(project)
    assert len(parents) == 1 and len(children) == 2
    assert sorted(c.data.tags["technique"] for c in children) == ["augment", "baseline"]
    assert all(c.info.status == "FINISHED" for c in children)


# --------------------------------------------------------------------------------------------- DVC queue


@pytest.mark.slow
def test_dvc_queue_runs_a_parameter_grid_and_exp_show_lists_test_accuracy(tmp_path):
    project = copy_project(tmp_path / "project")
    # the smoke preset (generated data, tiny epochs), written into params.yaml as `dvc exp run -S` does
    compose_params(project, "preset=smoke", "logger.enabled=false")
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "project"],
        cwd=project,
        check=True,
    )

    dvc = [sys.executable, "-m", "dvc"]
    identity = {
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }  # the queue commits each experiment
    run(
        [
            *dvc,
            "exp",
            "run",
            "train-baseline",
            "--queue",
            "-S",
            "preset=smoke",
            "-S",
            "logger.enabled=false",
            "-S",
            "seed=1,2",
        ],
        project,
        **identity,
    )
    assert run([*dvc, "queue", "status"], project).stdout.count("Queued") == 2
    run([*dvc, "exp", "run", "--run-all"], project, timeout=1800, **identity)
    shown = json.loads(run([*dvc, "exp", "show", "--json"], project).stdout)
    experiments = [e for commit in shown for e in (commit.get("experiments") or [])]
    results = {}
    for exp in experiments:
        (rev,) = exp["revs"]
        data = rev["data"]
        assert rev["data"].get("status", "Success") == "Success"
        results[data["params"]["params.yaml"]["data"]["seed"]] = data["metrics"]["models/baseline/metrics.json"][
            "data"
        ]["test_accuracy"]
    assert sorted(results) == [1, 2] and all(0 <= a <= 1 for a in results.values())


@pytest.mark.slow  # ~2-4 min: 12 jobs, each building a pretrained EfficientNet-Lite
def test_backbone_multirun_end_to_end(tmp_path):
    project = make_dataset(tmp_path, per_class=12)
    quick = ["data=synthetic", "trainer.progress=false", "logger.enabled=false", "preset=smoke"]
    run([sys.executable, str(ROOT / "pipelines" / "train.py"), "-m", *SWEEP, *quick], project, timeout=1800)
    (sweep,) = [p.parent for p in (project / "multirun").rglob("multirun.yaml")]
    saved = json.loads((sweep / "backbone_comparison.json").read_text())["rows"]
    assert [(r["backbone"], r["technique"], r["n_seeds"]) for r in saved] == [
        (b, t, 2) for b in LITES for t in ("feature_extract", "fine_tune")
    ]
    parameters = {r["backbone"]: r["parameters_mean"] for r in saved if r["technique"] == "fine_tune"}
    assert parameters["efficientnet_lite0"] < parameters["efficientnet_lite1"] < parameters["efficientnet_lite2"]


def _compare_seeds(*argv: str) -> None:
    entry_script("compare_seeds").main(list(argv))


def _visualize(**changes) -> dict:
    """The visualize section as a sweep's multirun.yaml holds it (all of it), with `changes`."""
    return {**config().visualize.model_dump(), **changes}


def test_compare_seeds_draws_the_comparison_from_an_existing_sweep_folder(tmp_path, capsys):
    sweep = tmp_path / "multirun" / "2026-12-02" / "07-04-20"
    for number, row in enumerate(SEED_ROWS):
        (sweep / str(number)).mkdir(parents=True)
        (sweep / str(number) / "metrics.json").write_text(json.dumps(row))
    # the sweep's own settings win over the project's: a reference given to that sweep
    (sweep / "multirun.yaml").write_text(
        yaml.safe_dump({"visualize": _visualize(reference_label="mine", reference={"baseline": 0.5}, dpi=20)})
    )
    _compare_seeds(str(sweep))
    assert capsys.readouterr().out.split() == [
        str(sweep / n)
        for n in ("seed_comparison.json", "seed_comparison.md", "seed_comparison.png", "seed_comparison.html")
    ]
    saved = json.loads((sweep / "seed_comparison.json").read_text())
    assert saved["reference_label"] == "mine" and [r["reference"] for r in saved["rows"]] == [0.5, None]
    assert saved["rows"][1]["test_accuracy_mean"] == pytest.approx(0.82)

    (sweep / "multirun.yaml").unlink()  # no multirun.yaml: the project's reference
    _compare_seeds(str(sweep))
    assert json.loads((sweep / "seed_comparison.json").read_text())["rows"][0]["reference"] == BOOK["baseline"]

    with pytest.raises(SystemExit) as exit_info:  # not a sweep: one clear line, status 2
        _compare_seeds(str(tmp_path / "nothing"))
    assert exit_info.value.code == 2
    assert "no job folder with a metrics.json" in capsys.readouterr().err


def test_a_sweep_that_varies_more_than_the_seed_is_not_averaged(tmp_path, capsys):
    from smallvision import sweeps

    sweep = tmp_path / "sweep"
    # lr varies slowest: its first jobs alone (0, 1) look like a seed sweep, the whole sweep is not one
    for number, (lr, seed) in enumerate([(1e-4, 0), (1e-4, 1), (3e-4, 0), (3e-4, 1)]):
        (sweep / str(number)).mkdir(parents=True)
        (sweep / str(number) / "metrics.json").write_text(
            json.dumps({"technique": "baseline", "seed": seed, "test_accuracy": 0.6 + number / 10})
        )
    (sweep / "multirun.yaml").write_text(
        yaml.safe_dump(
            {
                "hydra": {
                    "overrides": {"task": ["techniques.baseline.optimizer.lr=1e-4,3e-4", "seed=0,1", "data=synthetic"]}
                },
                "visualize": _visualize(reference_label="book", reference=BOOK, dpi=20),
            }
        )
    )
    assert sweeps.swept_keys(sweep) == {"techniques.baseline.optimizer.lr", "seed"}
    assert len(sweeps.sweep_comparison(sweep)) == 4  # the parent lists every job, from the first job on
    assert (
        sweeps.comparison_files(
            sweep, config().visualize.model_copy(update={"reference_label": "book", "reference": BOOK})
        )
        == []
    )
    assert not (sweep / "seed_comparison.json").exists()
    with pytest.raises(SystemExit):
        _compare_seeds(str(sweep))
    assert "also varies techniques.baseline.optimizer.lr" in capsys.readouterr().err


def test_compare_seeds_redraws_a_backbone_sweeps_comparison_from_its_folder(tmp_path, capsys):
    sweep = backbone_sweep(tmp_path)
    entry_script("compare_seeds").main([str(sweep)])  # the files the sweep's callback writes, from the folder
    assert "backbone_comparison.md" in capsys.readouterr().out and (sweep / "backbone_comparison.md").is_file()

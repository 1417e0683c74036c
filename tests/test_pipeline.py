"""End to end: `dvc repro` of the whole study on generated images, in a copy of the project."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from helpers.project import compose_params, copy_project, run

TECHNIQUES = ("baseline", "augment", "feature_extract", "fine_tune")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("project"))
    compose_params(project, "experiment=smoke")
    run([sys.executable, "-m", "dvc", "repro"], project)
    return project


def test_dvc_repro_runs_the_whole_study(project):
    report = json.loads((project / "data/prepared/split_report.json").read_text())
    assert report["total"] == {"train": 40, "val": 20, "test": 20}
    hashes = set()
    for technique in TECHNIQUES:
        metrics = json.loads((project / "models" / technique / "metrics.json").read_text())
        assert metrics["test_images"] == 20 and 0 <= metrics["test_accuracy"] <= 1
        assert (project / "models" / technique / "best.ckpt").stat().st_size > 0
        # where the numbers came from (no commit yet in this fresh repository)
        assert {k: metrics[k] for k in ("study", "seed", "dataset", "data_source", "git_commit")} == {
            "study": "smoke",
            "seed": 42,
            "dataset": "synthetic",
            "data_source": "synthetic",
            "git_commit": None,
        }
        assert len(metrics["manifest"]) == len(metrics["config_hash"]) == 12 and metrics["trained_at"].endswith("Z")
        hashes.add((metrics["manifest"], metrics["config_hash"]))
    assert len(hashes) == 1  # one split, one config: the four stages of one study
    shown = run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], project).stdout
    assert "test_accuracy" in shown


def test_visualize_writes_the_report(project):
    reports = project / "reports"
    html = (reports / "index.html").read_text()
    comparison = json.loads((reports / "comparison.json").read_text())
    assert [row["technique"] for row in comparison["rows"]] == list(TECHNIQUES)  # one row each, the study's order
    # each technique against the one before it, on the same 20 test images
    steps = [(row["step_from"], row["step_paired_images"]) for row in comparison["rows"][1:]]
    assert steps == [("baseline", 20), ("augment", 20), ("feature_extract", 20)]
    assert all(0 < row["step_p_value"] <= 1 for row in comparison["rows"][1:]) and comparison["excluded"] == {}
    for technique in TECHNIQUES:
        assert (reports / f"curves_{technique}.png").stat().st_size > 0
        assert (reports / f"gradcam_{technique}.png").stat().st_size > 0
        assert technique in html
    assert list(reports.glob("activations_*.png")) and list(reports.glob("filters_*.png"))
    assert html.count("data:image/png;base64,") >= 8  # self-contained: figures embedded


def test_mlflow_holds_one_study_with_a_child_per_technique(project):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    experiment = client.get_experiment_by_name("smallvision")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1
    assert sorted(r.data.tags["technique"] for r in children) == sorted(TECHNIQUES)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    for child in children:
        assert child.info.status == "FINISHED"
        assert "test_accuracy" in child.data.metrics and "val_acc" in child.data.metrics
        assert child.data.params["technique"] == child.data.tags["technique"]
        assert child.data.tags["git_commit"] and child.data.tags["seed"] == "42"
    assert any(k.endswith("test_accuracy") for k in parents[0].data.metrics)
    # `dvc metrics show` prints the comparison's numbers, paired tests included, as the study's run holds them
    shown = json.loads(run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], project).stdout)
    comparison = shown[""]["data"]["metrics/comparison.json"]["data"]
    flat = {f"{technique}.{key}": value for technique, values in comparison.items() for key, value in values.items()}
    assert "fine_tune.step_p_value" in flat
    assert {k: v for k, v in parents[0].data.metrics.items() if k != "visualize_wall_time_s"} == pytest.approx(flat)


def test_nothing_changed_reruns_nothing_and_one_change_reruns_only_what_it_feeds(project):
    status = run([sys.executable, "-m", "dvc", "status", "--json"], project).stdout
    assert json.loads(status) == {}
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["techniques"]["fine_tune"]["optimizer"]["lr"] = 2e-4
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    changed = json.loads(run([sys.executable, "-m", "dvc", "status", "--json"], project).stdout)
    assert set(changed) == {"fine-tune"}

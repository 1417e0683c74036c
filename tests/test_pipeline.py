"""End to end: `dvc repro` of the whole study on generated images, in a copy of the project."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.browser import CHROMIUM_FLAGS, OFFLINE, chromium
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
    for technique in TECHNIQUES:
        metrics = json.loads((project / "models" / technique / "metrics.json").read_text())
        assert metrics["test_images"] == 20 and 0 <= metrics["test_accuracy"] <= 1
        assert (project / "models" / technique / "best.ckpt").stat().st_size > 0
    shown = run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], project).stdout
    assert "test_accuracy" in shown


def test_visualize_writes_the_report(project):
    reports = project / "reports"
    html = (reports / "index.html").read_text()
    comparison = json.loads((reports / "comparison.json").read_text())
    assert [row["technique"] for row in comparison["rows"]] == list(TECHNIQUES)  # one row each, the study's order
    for technique in TECHNIQUES:
        assert (reports / f"curves_{technique}.png").stat().st_size > 0
        assert (reports / f"gradcam_{technique}.png").stat().st_size > 0
        assert technique in html
    assert list(reports.glob("activations_*.png")) and list(reports.glob("filters_*.png"))
    assert html.count("data:image/png;base64,") >= 8  # self-contained: figures embedded


def test_export_stage_writes_the_network_of_export_technique(project):
    out = project / "models" / "export"
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.torchscript.pt", "preprocessing.json"]
    described = json.loads((out / "preprocessing.json").read_text())
    assert described["technique"] == "baseline" and described["classes"] == ["circle", "square"]  # the smoke preset's
    assert described["preprocessing"]["image_size"] == 64 and described["onnx_opset"] == 20
    assert described["parity"]["images"] == 8 and max(described["parity"]["max_abs_difference"].values()) <= 1e-4


def test_dvc_plots_show_draws_offline(project, tmp_path):
    """The committed template (.dvc/config) inlines Vega: the page loads nothing and, in Chromium with every host
    name unresolvable, draws all its charts: dvc.yaml's six (accuracy, loss, four confusion matrices) and the
    training stages' eight plot files (history.csv, test_predictions.csv)."""
    run([sys.executable, "-m", "dvc", "plots", "show", "-o", str(tmp_path / "plots")], project)
    page = tmp_path / "plots" / "index.html"
    html = page.read_text()
    assert "<script src" not in html and "cdn.jsdelivr" not in html
    assert html.count("vegaEmbed('#") == 14
    dom = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, OFFLINE, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
        + ["--dump-dom", page.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout
    assert dom.count('class="marks"') == 14  # each chart drawn: vega-embed's <canvas class="marks">


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


def test_nothing_changed_reruns_nothing_and_one_change_reruns_only_what_it_feeds(project):
    status = run([sys.executable, "-m", "dvc", "status", "--json"], project).stdout
    assert json.loads(status) == {}
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["techniques"]["fine_tune"]["optimizer"]["lr"] = 2e-4
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    changed = json.loads(run([sys.executable, "-m", "dvc", "status", "--json"], project).stdout)
    assert set(changed) == {"fine-tune"}


def test_export_follows_the_technique_it_is_given(project):
    """dvc.yaml's export deps name models/${export.technique}/best.ckpt: another technique reruns export alone."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["export"]["technique"] = "augment"
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert "export" in json.loads(run([sys.executable, "-m", "dvc", "status", "--json"], project).stdout)
    ran = run([sys.executable, "-m", "dvc", "repro", "export"], project).stdout
    assert re.findall(r"Running stage '([^']+)'", ran) == ["export"]
    described = json.loads((project / "models" / "export" / "preprocessing.json").read_text())
    assert described["technique"] == "augment" and described["network"] == "small_convnet"
    augment = (project / "models" / "augment" / "best.ckpt").read_bytes()
    assert described["source"]["sha256"] == hashlib.sha256(augment).hexdigest()

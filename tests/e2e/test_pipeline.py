"""End to end: `dvc repro` of the whole study on generated images, in a copy of the project."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers.browser import CHROMIUM_FLAGS, OFFLINE, chromium
from helpers.project import (
    ROOT,
    compose_params,
    copy_project,
    dvc_status,
    env,
    run,
    signal_group,
    start,
    wait_mid_training,
)
from helpers.study import LIMITS

from smallvision.files import OUTPUT_MARKER

TECHNIQUES = ("baseline", "augment", "modern", "feature_extract", "fine_tune")
HYDRA = ("--config-dir", ".", "--config-name", "params", "hydra.output_subdir=null", "hydra.run.dir=.")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("project"))
    compose_params(project, "preset=smoke")
    (project / "repro.log").write_text(run([sys.executable, "-m", "dvc", "repro"], project).stdout)
    return project


def test_dvc_repro_runs_the_whole_study(project):
    report = json.loads((project / "data/prepared/split_report.json").read_text())
    assert report["total"] == {"train": 40, "val": 20, "test": 20}
    shown = json.loads(run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], project).stdout)
    (shown,) = [v["data"] for v in shown.values()]  # the workspace
    hashes = set()
    for technique in TECHNIQUES:
        out = project / "models" / technique
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [  # README "Outputs"
            "best.ckpt",
            "confusion.json",
            "history.csv",
            "metrics.json",
            "test_accuracy.json",
            "test_predictions.csv",
        ]
        metrics = json.loads((out / "metrics.json").read_text())
        # the accuracy is that of the 20 test predictions the stage wrote, and of its confusion matrix
        with open(out / "test_predictions.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        correct = sum(r["actual"] == r["predicted"] for r in rows)
        matrix = json.loads((out / "confusion.json").read_text())["matrix"]
        assert metrics["test_images"] == len(rows) == sum(map(sum, matrix)) == 20
        assert metrics["test_accuracy"] == pytest.approx(correct / 20) == sum(matrix[i][i] for i in range(2)) / 20
        assert (out / "best.ckpt").stat().st_size > 0
        # `dvc metrics show` prints each technique's numbers
        assert shown[f"models/{technique}/metrics.json"]["data"]["test_accuracy"] == metrics["test_accuracy"]
        # where the numbers came from (no commit yet in this fresh repository)
        assert {k: metrics[k] for k in ("preset", "seed", "dataset", "data_source", "git_commit")} == {
            "preset": "smoke",
            "seed": 42,
            "dataset": "synthetic",
            "data_source": "synthetic",
            "git_commit": None,
        }
        assert len(metrics["manifest"]) == len(metrics["config_hash"]) == 12 and metrics["trained_at"].endswith("Z")
        hashes.add((metrics["manifest"], metrics["config_hash"]))
    assert len(hashes) == 1  # one split, one config: the five stages of one study
    assert shown["data/prepared/split_report.json"]["data"]["total"] == report["total"]  # the split's counts too
    assert (project / "data/prepared/manifest.csv").exists()
    assert len(list(project.glob("data/features/efficientnet_lite0/features-*.npy"))) == 1


def test_dvc_plots_show_draws_the_curves_and_the_confusion_matrices(project):
    plots = json.loads(run([sys.executable, "-m", "dvc", "plots", "show", "--json"], project).stdout)["data"]

    def values(name: str) -> list[dict]:
        (plot,) = plots[name]
        return plot["content"]["data"]["values"]

    for name, metric in (("accuracy", "acc"), ("loss", "loss")):  # one curve per technique and split
        assert {v["filename::field"] for v in values(name)} == {
            f"{t}/history.csv::{split}_{metric}" for t in TECHNIQUES for split in ("train", "val")
        }
    for technique in TECHNIQUES:  # a confusion matrix of the test split per technique
        cells = values(f"confusion_{technique}")
        assert len(cells) == 20 and {v["actual"] for v in cells} == {"circle", "square"}


def test_visualize_writes_the_report(project):
    reports = project / "reports"
    html = (reports / "index.html").read_text()
    comparison = json.loads((reports / "comparison.json").read_text())
    assert [row["technique"] for row in comparison["rows"]] == list(TECHNIQUES)  # one row each, the study's order
    # each technique against the one before it, on the same 20 test images
    steps = [(row["step_from"], row["step_paired_images"]) for row in comparison["rows"][1:]]
    assert steps == [("baseline", 20), ("augment", 20), ("modern", 20), ("feature_extract", 20)]
    assert all(0 < row["step_p_value"] <= 1 for row in comparison["rows"][1:]) and comparison["excluded"] == {}
    for technique in TECHNIQUES:
        assert (reports / f"curves_{technique}.png").stat().st_size > 0
        assert (reports / f"gradcam_{technique}.png").stat().st_size > 0
        assert technique in html
    assert list(reports.glob("activations_*.png")) and list(reports.glob("filters_*.png"))
    assert html.count("data:image/png;base64,") >= 8  # self-contained: figures embedded


def test_export_stage_writes_the_network_of_export_technique(project):
    out = project / "models" / "export"
    files = [OUTPUT_MARKER, "model.onnx", "model.torchscript.pt", "preprocessing.json"]
    assert sorted(p.name for p in out.iterdir()) == files  # the marker: the stage's own folder, for its next run
    described = json.loads((out / "preprocessing.json").read_text())
    assert described["technique"] == "baseline" and described["classes"] == ["circle", "square"]  # the smoke preset's
    assert described["preprocessing"]["image_size"] == 64 and described["onnx_opset"] == 20
    assert described["parity"]["images"] == 8 and max(described["parity"]["max_abs_difference"].values()) <= 1e-4


def test_dvc_plots_show_draws_offline(project, tmp_path):
    """The committed template (.dvc/config) inlines Vega: the page loads nothing and, in Chromium with every host
    name unresolvable, draws all its charts: dvc.yaml's seven (accuracy, loss, five confusion matrices), each with
    titled axes, and nothing else (no file drawn against its row index)."""
    run([sys.executable, "-m", "dvc", "plots", "show", "-o", str(tmp_path / "plots")], project)
    page = tmp_path / "plots" / "index.html"
    html = page.read_text()
    assert "<script src" not in html and "cdn.jsdelivr" not in html
    assert html.count("vegaEmbed('#") == 7
    titles = set(re.findall(r'"title":\s*"([^"]*)"', html))  # the axes' (and charts') titles
    assert {"epoch", "accuracy", "cross-entropy loss", "actual class", "predicted class"} <= titles
    assert not {"y", "step"} & titles
    dom = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, OFFLINE, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
        + ["--dump-dom", page.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout
    assert dom.count('class="marks"') == 7  # each chart drawn: vega-embed's <canvas class="marks">


def test_mlflow_holds_one_study_with_a_child_per_technique(project):
    from mlflow.tracking import MlflowClient

    from smallvision.data.manifest import manifest_digest
    from smallvision.tracking import STUDY_KEY_TAG

    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    experiment = client.get_experiment_by_name("smallvision")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1
    # the study run's key, by hand: <study>/<dataset>/seed <seed>/<manifest digest, 12 hex digits> (log_metrics.py
    # finds it so)
    digest = manifest_digest(project / "data/prepared/manifest.csv")
    assert parents[0].data.tags[STUDY_KEY_TAG] == f"smoke/synthetic/seed 42/{digest[:12]}"
    assert sorted(r.data.tags["technique"] for r in children) == sorted(TECHNIQUES)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert parents[0].info.run_name == "study smoke (synthetic, seed 42)"
    for child in children:
        technique = child.data.tags["technique"]
        epochs = json.loads((project / "models" / technique / "metrics.json").read_text())["epochs"]
        assert child.info.status == "FINISHED" and child.info.run_name == technique
        assert "test_accuracy" in child.data.metrics
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_acc")]
        start = [0] if technique == "fine_tune" else []  # fine-tune validates its starting weights as epoch 0
        assert sorted(steps) == [*start, *range(1, epochs + 1)]  # a point per epoch
        assert child.data.params["technique"] == technique  # the config as parameters
        assert child.data.params[f"techniques.{technique}.epochs"] == str(epochs)
        assert "mlflow.source.git.commit" not in child.data.tags  # no commit yet in this fresh repository
        assert child.data.tags["seed"] == "42"
        assert child.data.tags["dataset"] == "synthetic"
        assert child.data.tags["backbone"] == {
            "baseline": "small_convnet",
            "augment": "small_convnet",
            "modern": "mini_xception",
        }.get(technique, "efficientnet_lite0")
        assert {a.path for a in client.list_artifacts(child.info.run_id)} == {
            "metrics.json",
            "history.csv",
            "confusion.json",
            "test_predictions.csv",
            "config",  # config/train.yaml, what the stage read
            "figures",  # the report's figures of this technique
        }
        figures = {a.path for a in client.list_artifacts(child.info.run_id, "figures")}
        assert {f"figures/curves_{technique}.png", f"figures/gradcam_{technique}.png"} <= figures
    assert {f"{t}.test_accuracy" for t in TECHNIQUES} <= set(parents[0].data.metrics)
    parent_files = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"comparison.json", "comparison.md", "comparison.png", "index.html"} <= parent_files
    # `dvc metrics show` prints the comparison's numbers, paired tests included, as the study's run holds them
    shown = json.loads(run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], project).stdout)
    comparison = shown[""]["data"]["metrics/comparison.json"]["data"]
    flat = {f"{technique}.{key}": value for technique, values in comparison.items() for key, value in values.items()}
    assert "fine_tune.step_p_value" in flat
    logged = {k: v for k, v in parents[0].data.metrics.items() if k != "visualize_wall_time_s"}
    audit = {k: v for k, v in logged.items() if k.startswith("audit.")}  # and the data audit's counts
    assert {k: v for k, v in logged.items() if k not in audit} == pytest.approx(flat)
    counts = shown[""]["data"]["data/audit/summary.json"]["data"]
    assert audit == pytest.approx({f"audit.{k}": v for k, v in counts.items()})


def test_mlflow_holds_each_runs_data_config_and_network_and_the_champion(project):
    import mlflow.pytorch
    from mlflow.tracking import MlflowClient
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    from smallvision.data.manifest import manifest_digest
    from smallvision.networks import ImageClassifier, load_checkpoint

    uri = f"sqlite:///{project}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("smallvision")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id])
    children = {r.data.tags["technique"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    params = yaml.safe_load((project / "params.yaml").read_text())
    log = (project / "repro.log").read_text()
    digest = manifest_digest(project / "data/prepared/manifest.csv")[:12]
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8))
    for technique, child in children.items():
        (data,) = child.inputs.dataset_inputs
        assert (data.dataset.name, data.dataset.digest) == ("synthetic", digest)
        assert json.loads(data.dataset.profile) == {"num_rows": 80, "train": 40, "val": 20, "test": 20}
        config = yaml.safe_load(Path(client.download_artifacts(child.info.run_id, "config/train.yaml")).read_text())
        assert config["techniques"] == {technique: params["techniques"][technique]} and config["seed"] == 42
        assert f"train {technique}: configuration read" in log
        (output,) = child.outputs.model_outputs
        net, spec = load_checkpoint(project / "models" / technique / "best.ckpt")
        with torch.no_grad(), _use_tracking_uri(uri):
            logged = mlflow.pytorch.load_model(f"models:/{output.model_id}")
            assert torch.allclose(logged(images), ImageClassifier(net, spec["mean"], spec["std"]).eval()(images))
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    visualize = yaml.safe_load(Path(client.download_artifacts(parent.info.run_id, "config/visualize.yaml")).read_text())
    assert visualize == {k: params[k] for k in ("visualize", "augmentation", "preset", "seed")}
    champion = client.get_model_version_by_alias("smallvision-classifier", "champion")
    # chosen on validation accuracy; of equal ones the lower validation loss, then the later technique
    best = max(
        children.values(),
        key=lambda r: (
            r.data.metrics["best_val_accuracy"],
            -r.data.metrics["best_val_loss"],
            TECHNIQUES.index(r.data.tags["technique"]),
        ),
    )
    assert champion.run_id == best.info.run_id
    (output,) = best.outputs.model_outputs  # the logged model's page names the registered version
    versions = json.loads(client.get_logged_model(output.model_id).tags["mlflow.modelVersions"])
    assert {"name": "smallvision-classifier", "version": int(champion.version)} in versions
    url = f"MLflow: http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}?workflowType=machine_learning"
    assert log.count(url) == len(TECHNIQUES) + 1  # after each training stage and visualize


def test_predict_with_the_champion_writes_what_its_checkpoint_does(project, monkeypatch):
    from mlflow.tracking import MlflowClient

    from smallvision.predict import predict, write_csv

    monkeypatch.chdir(project)
    model = "predict.model=models:/smallvision-classifier@champion"
    run([sys.executable, "pipelines/predict.py", *HYDRA, model, "predict.input=data/raw"], project)
    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    champion = client.get_model_version_by_alias("smallvision-classifier", "champion")
    write_csv(
        predict(Path("models") / champion.tags["technique"] / "best.ckpt", Path("data/raw"), 32, False, LIMITS),
        Path("expected.csv"),
    )
    assert (project / "predictions.csv").read_text() == (project / "expected.csv").read_text()


def test_nothing_changed_reruns_nothing_and_one_change_reruns_only_what_it_feeds(project):
    assert list((project / "data/cache").iterdir())
    shutil.rmtree(project / "data/cache")  # README "Outputs": a cache, safe to delete (the next training rebuilds it)
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


def test_a_stage_killed_mid_training_is_not_recorded_and_reruns_from_epoch_1(project, tmp_path):
    """README "A run killed half-way", fast (the slow suite repeats it on longer epochs): SIGKILL of `dvc repro`'s
    whole process group mid-training leaves no metrics.json, dvc.lock keeps the stage's previous run, `dvc status`
    shows the stage changed, and the next `dvc repro` trains it again from epoch 1."""
    out = project / "models" / "baseline"
    recorded = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["train-baseline"]
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["techniques"]["baseline"]["epochs"] = 10_000  # far more than it runs before the kill
    (project / "params.yaml").write_text(yaml.safe_dump(params))

    log = tmp_path / "repro.log"
    proc = start([sys.executable, "-m", "dvc", "repro", "train-baseline"], project, log)
    wait_mid_training(proc, out / "best.ckpt", log)
    signal_group(proc, signal.SIGKILL)
    proc.wait(timeout=30)  # reaped: DVC's stale-lock check treats a zombie's pid as alive
    assert (out / "best.ckpt").exists() and not (out / "metrics.json").exists()
    assert yaml.safe_load((project / "dvc.lock").read_text())["stages"]["train-baseline"] == recorded
    assert set(dvc_status(project, "train-baseline")) == {"train-baseline"}

    params["techniques"]["baseline"]["epochs"] = 3
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    rerun = run([sys.executable, "-m", "dvc", "repro", "train-baseline"], project)
    assert "Running stage 'train-baseline'" in rerun.stdout
    history = (out / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["1", "2", "3"]  # from epoch 1: no resume
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 3
    assert dvc_status(project, "train-baseline") == {}


IDENTITY = {  # the queue commits each experiment
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


def test_a_dvc_queue_runs_a_parameter_grid_and_exp_show_lists_the_test_accuracies(project):
    """README "DVC experiments", fast (one stage, whose upstream is already in the DVC cache; the slow suite queues
    a seed grid from scratch), with the project's own .gitignore: `-S key=a,b` queues one experiment per value, the
    queue runs them in temporary copies, each experiment's commit holds its metrics files, so `dvc exp show` gives
    each one's test accuracy beside the value, and each one's MLflow runs are in the project's store, tagged with
    the experiment's name."""
    assert (project / ".gitignore").read_text() == (ROOT / ".gitignore").read_text()
    compose_params(project, "preset=smoke")  # the smoke study as committed (the tests above changed some settings)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(["git", "commit", "-qm", "the study"], cwd=project, check=True, env={**os.environ, **IDENTITY})
    committed = subprocess.run(
        ["git", "ls-files"], cwd=project, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "models/baseline/metrics.json" in committed and "metrics/comparison.json" in committed
    assert not [f for f in committed if f.endswith((".ckpt", ".npy", ".jpg", ".png", ".db"))]  # no data, no models
    workspace_metrics = (project / "models/baseline/metrics.json").read_text()
    dvc = [sys.executable, "-m", "dvc"]
    grid = ["-S", "preset=smoke", "-S", "techniques.baseline.batch_size=16,32"]
    queue_env = {k: v for k, v in env(project, **IDENTITY).items() if k != "MLFLOW_TRACKING_URI"}  # the default store

    def queue(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*dvc, *args], cwd=project, env=queue_env, capture_output=True, text=True, timeout=900, check=False
        )
        assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        return result

    queue("exp", "run", "train-baseline", "--queue", *grid)
    assert queue("queue", "status").stdout.count("Queued") == 2
    queue("exp", "run", "--run-all")

    shown = json.loads(run([*dvc, "exp", "show", "--json"], project).stdout)
    results, names = {}, set()
    for exp in (e for commit in shown for e in (commit.get("experiments") or [])):
        (rev,) = exp["revs"]
        assert rev["data"].get("status", "Success") == "Success"
        batch = rev["data"]["params"]["params.yaml"]["data"]["techniques"]["baseline"]["batch_size"]
        results[batch] = rev["data"]["metrics"]["models/baseline/metrics.json"]["data"]
        names.add(exp["name"])
    assert sorted(results) == [16, 32]
    assert all(m["test_images"] == 20 and 0 <= m["test_accuracy"] <= 1 for m in results.values())
    table = run([*dvc, "exp", "show", "--csv"], project).stdout.splitlines()
    # (each technique's metrics.json has a test_accuracy: DVC names the column by its file)
    assert {"models/baseline/metrics.json:test_accuracy", "techniques.baseline.batch_size"} <= set(table[0].split(","))
    changed = run([*dvc, "exp", "show", "--only-changed", "--csv"], project).stdout.splitlines()[0].split(",")
    assert "techniques.baseline.batch_size" in changed  # (and test_accuracy, where the accuracies differ)

    # README "DVC experiments": the readable table, the changed parameter and the five accuracies in 120 columns
    (readable,) = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("dvc exp show ")]
    table = run(shlex.split(readable.replace("dvc", f"{shlex.quote(sys.executable)} -m dvc", 1)), project).stdout
    lines = [line.rstrip() for line in table.splitlines() if line.strip()]
    assert max(map(len, lines)) <= 120, table
    header = lines[1].split()
    assert sorted(header) == sorted(["Experiment", *TECHNIQUES, "techniques.baseline.batch_size"]), table
    assert sum(f"[{name}]" in table for name in names) == 2

    # the experiments' MLflow runs: in the project's store, not in the temporary copies DVC deleted
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    (experiment,) = [e for e in client.search_experiments() if e.name == "smallvision"]
    logged = {}
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, check=True)
    for r in client.search_runs([experiment.experiment_id], filter_string="tags.technique = 'baseline'"):
        if "dvc.experiment" in r.data.tags:
            logged[r.data.tags["dvc.experiment"]] = int(r.data.params["techniques.baseline.batch_size"])
            assert r.data.tags["mlflow.source.git.commit"] == head.stdout.strip()  # the experiments' baseline
    assert set(logged) == names and sorted(logged.values()) == [16, 32]
    assert (project / "models/baseline/metrics.json").read_text() == workspace_metrics  # the workspace untouched

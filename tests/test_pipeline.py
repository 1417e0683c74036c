"""End to end: `dvc repro` of the whole study on generated images, in a copy of the project."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers.project import compose_params, copy_project, run

TECHNIQUES = ("baseline", "augment", "feature_extract", "fine_tune")
HYDRA = ("--config-dir", ".", "--config-name", "params", "hydra.output_subdir=null", "hydra.run.dir=.")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("project"))
    compose_params(project, "experiment=smoke")
    (project / "repro.log").write_text(run([sys.executable, "-m", "dvc", "repro"], project).stdout)
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
    assert visualize == {"visualize": params["visualize"], "augmentation": params["augmentation"]}
    champion = client.get_model_version_by_alias("smallvision-classifier", "champion")
    best = max(children.values(), key=lambda r: (r.data.metrics["best_val_accuracy"], -r.info.start_time))
    assert champion.run_id == best.info.run_id  # chosen on validation accuracy
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
        predict(Path("models") / champion.tags["technique"] / "best.ckpt", Path("data/raw"), progress=False),
        Path("expected.csv"),
    )
    assert (project / "predictions.csv").read_text() == (project / "expected.csv").read_text()


def test_nothing_changed_reruns_nothing_and_one_change_reruns_only_what_it_feeds(project):
    status = run([sys.executable, "-m", "dvc", "status", "--json"], project).stdout
    assert json.loads(status) == {}
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["techniques"]["fine_tune"]["optimizer"]["lr"] = 2e-4
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    changed = json.loads(run([sys.executable, "-m", "dvc", "status", "--json"], project).stdout)
    assert set(changed) == {"fine-tune"}

"""The data audit in the study's outputs: the report's "Data audit" section (thumbnails of the top-ranked images of
each list, from the audit stage's files, or one line when it has not run), its counts as DVC metrics and on the
MLflow study run, and the split's one-line error for a missing exclusion list (the command that appends audit rows to
it: tests/unit/data/test_exclusions.py; the flagged mistakes beside each technique's accuracy:
tests/unit/visualize/test_audit_findings.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT
from helpers.entry import assert_one_line_error, run_stage
from helpers.study import config, make_dataset
from mlflow import MlflowClient

from smallvision import audit, stages
from smallvision.data.manifest import load_manifest
from smallvision.tracking import StudyTracker
from smallvision.visualize import audit_findings
from smallvision.visualize.stage import run_visualize


def plant_findings(root: Path) -> audit.Findings:
    """Audit findings over the generated split's images, written where the audit stage writes them: three label
    issues, a val-train pair listed before a leaking train-test pair, two off-task images."""
    records, _ = load_manifest(root / "data" / "prepared")
    by_split = {s: [r for r in records if r.split == s] for s in ("train", "val", "test")}
    other = {"circle": "square", "square": "circle"}

    def row(r, score):
        return {"path": r.path, "split": r.split, "label": r.label, "suggested": other[r.label], "score": score}

    def pair(a, b, similarity):
        return {
            "path_a": a.path,
            "split_a": a.split,
            "label_a": a.label,
            "path_b": b.path,
            "split_b": b.split,
            "label_b": b.label,
            "similarity": similarity,
            "leakage": frozenset((a.split, b.split)) in audit.LEAKING,
        }

    issues = [row(by_split["test"][0], 0.01), row(by_split["test"][1], 0.02), row(by_split["train"][0], 0.03)]
    pairs = [
        pair(by_split["val"][0], by_split["train"][1], 0.99),
        pair(by_split["train"][2], by_split["test"][2], 0.95),
    ]
    off = [row(by_split["train"][3], 0.1), row(by_split["val"][1], 0.2)]
    summary = {"images": len(records), "label_issues": 3, "near_duplicate_pairs": 2, "leakage_pairs": 1, "off_task": 2}
    found = audit.Findings(issues, pairs, off, summary)
    audit.write_findings(root / "data" / "audit", found)
    return found


class Spy:
    """A figure function that records what it was given, then draws as the real one does."""

    def __init__(self, draw):
        self.draw, self.calls = draw, []

    def __call__(self, *args):
        self.calls.append(args)
        return self.draw(*args)


def _visualize(root: Path, *overrides: str):
    threads = torch.get_num_threads()
    try:  # no technique trained: every other section notes it; the audit's needs only the split and its files
        return run_visualize(config("visualize.dpi=40", "visualize.threads=1", *overrides), root)
    finally:
        torch.set_num_threads(threads)


def _section(page: str, name: str) -> str:
    return re.search(rf'<section id="{name}">(.*?)</section>', page, re.DOTALL).group(1)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("audited"), per_class=12)


def test_the_section_shows_the_top_ranked_images_of_each_list(study, monkeypatch):
    found = plant_findings(study)
    thumbs, pairs = Spy(audit_findings.thumbnails_figure), Spy(audit_findings.pairs_figure)
    monkeypatch.setattr(audit_findings, "thumbnails_figure", thumbs)
    monkeypatch.setattr(audit_findings, "pairs_figure", pairs)
    out = _visualize(study, "visualize.audit.thumbnails=2", "visualize.audit.image_size=40")
    labels, off_task = thumbs.calls
    images, titles, names, heading, _ = labels
    assert len(images) == 2 and images[0].shape == (40, 40, 3)  # visualize.audit.thumbnails, the first ranked
    assert titles[0] == f"labelled {found.label_issues[0]['label']}\nlooks {found.label_issues[0]['suggested']}, 0.01"
    assert names[0] == f"{Path(found.label_issues[0]['path']).name} (test)" and "2 top-ranked of 3" in heading
    assert off_task[1][0].endswith("typicality 0.1")
    ((drawn, rows, heading, _),) = pairs.calls
    assert [r["leakage"] for r in rows] == [True, False]  # leakage first, though less similar
    assert len(drawn) == 2 and drawn[0][0].shape == drawn[0][1].shape == (40, 40, 3)
    page = out.index.read_text(encoding="utf-8")
    section = _section(page, "audit")
    assert section.count("<img") == 3 and "Data audit" in section
    assert "<td>leakage pairs</td><td>1</td>" in section  # the counts
    assert {p.name for p in out.study_files} >= {
        "audit_label_issues.png",
        "audit_near_duplicates.png",
        "audit_off_task.png",
    }
    assert out.audit == {f"audit.{k}": float(v) for k, v in found.summary.items()}


def test_without_the_audit_the_section_says_so_in_one_line(study):
    shutil.rmtree(study / "data" / "audit", ignore_errors=True)
    out = _visualize(study)
    section = _section(out.index.read_text(encoding="utf-8"), "audit")
    notes = re.findall(r'<p class="note">(.*?)</p>', section)
    assert notes == [
        (
            "The data audit has not run (no data/audit): dvc repro audit lists probable label errors, "
            "near-duplicates and off-task images."
        )
    ]
    assert "<img" not in section and out.audit == {} and not list(out.reports.glob("audit_*.png"))


def test_rows_of_another_split_are_noted_not_drawn(study):
    found = plant_findings(study)
    gone = {**found.label_issues[0], "path": "circle/not_in_the_manifest.png"}
    audit.write_findings(study / "data" / "audit", audit.Findings([gone], [], [], found.summary))
    section = _section(_visualize(study).index.read_text(encoding="utf-8"), "audit")
    assert "1 images the audit lists are not in the manifest (e.g. circle/not_in_the_manifest.png)" in section
    assert "no probable label errors listed" in section and "<img" not in section


# --------------------------------------------------------------------------- counts: DVC metrics, MLflow


def test_the_audit_counts_are_dvc_metrics(tmp_path):
    """The audit stage's summary.json is a metrics file of the registry, numbers only, and `dvc metrics show`
    prints it."""
    cfg = stages.composed_conf(ROOT / "conf")
    spec = stages.stage("audit", cfg)
    assert [m.path for m in spec.metrics] == [f"{cfg['paths']['audit']}/{audit.SUMMARY}"]
    assert f"{cfg['paths']['audit']}/{audit.LABEL_ISSUES}" in stages.stage("visualize", cfg).deps
    summary = {"images": 40, "label_issues": 3, "leakage_pairs": 1, "out_of_fold_accuracy": 0.9}
    audit.write_findings(tmp_path / "data" / "audit", audit.Findings([], [], [], summary))
    shutil.copy(ROOT / "dvc.yaml", tmp_path)
    shutil.copy(ROOT / "params.yaml", tmp_path)
    dvc = [sys.executable, "-m", "dvc"]
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=tmp_path, check=True, env=env)
    shown = subprocess.run(
        [*dvc, "metrics", "show", "--json"], cwd=tmp_path, check=True, capture_output=True, text=True, env=env
    )
    metrics = json.loads(shown.stdout)[""]["data"]["data/audit/summary.json"]["data"]
    assert metrics == summary


def test_the_audit_counts_and_flagged_mistakes_land_on_the_study_run(tmp_path):
    uri = f"sqlite:///{tmp_path.as_posix()}/mlflow.db"
    tracker = StudyTracker(uri, "audit", study_key="study/x/1", study_name="quick", tags={})
    rows = [{"technique": "augment", "test_accuracy": 0.8, "test_mistakes": 10, "test_mistakes_flagged": 3}]
    counts = {"audit.label_issues": 7.0, "audit.leakage_pairs": 2.0}
    tracker.log_report(rows, [], {}, 1.5, tmp_path, counts)
    logged = MlflowClient(uri).get_run(tracker.parent_run_id).data.metrics
    assert logged["audit.label_issues"] == 7.0 and logged["audit.leakage_pairs"] == 2.0
    assert logged["augment.test_mistakes_flagged"] == 3.0 and logged["augment.test_accuracy"] == 0.8


# --------------------------------------------------------------------------- bad input: one line, exit 2


def test_a_missing_exclusion_file_is_one_line(tmp_path, monkeypatch, capsys):
    make_dataset(tmp_path, per_class=4)
    monkeypatch.chdir(tmp_path)
    outcome = run_stage("split", capsys, "data=folder", "data.source=unused", "data.exclude=reviewed.txt")
    assert_one_line_error(outcome, "reviewed.txt (data.exclude) not found")

"""A backbone sweep (`-m technique=feature_extract,fine_tune backbone=efficientnet_lite0,efficientnet_lite1,
efficientnet_lite2 seed=0,1,2`): each fine-tune job starts from its own backbone's head with the same seed, and the
sweep writes a comparison per backbone (accuracy with its interval, time per epoch, parameters)."""

from __future__ import annotations

import json

import pytest
from helpers.fake_runs import LITES, backbone_job, backbone_sweep
from helpers.study import config
from matplotlib.backends.backend_agg import FigureCanvasAgg

from smallvision import sweeps
from smallvision.errors import DataError
from smallvision.stats import wilson_interval
from smallvision.visualize.backbone_comparison import backbone_figure, backbone_table


def test_a_backbone_sweep_is_compared_per_backbone_and_technique(tmp_path):
    table = backbone_table(
        [backbone_job(t, b, s) for t in ("feature_extract", "fine_tune") for b in LITES for s in (0, 1)]
    )
    assert [(r["backbone"], r["technique"]) for r in table] == [
        (b, t) for b in LITES for t in ("feature_extract", "fine_tune")
    ]
    row = table[3]  # efficientnet_lite1, fine_tune
    assert row["n_seeds"] == 2 and row["seeds"] == [0, 1]
    assert row["test_accuracy_mean"] == pytest.approx(0.9795)
    assert row["test_accuracy_values"] == pytest.approx([0.979, 0.980])
    assert (row["ci95_low"], row["ci95_high"]) == pytest.approx(wilson_interval(round(0.9795 * 996), 996))
    assert row["seconds_per_epoch_mean"] == 60.0 and row["parameters_mean"] == 4.5e6
    fig = backbone_figure(table)
    FigureCanvasAgg(fig).draw()
    accuracy, seconds, parameters = fig.axes
    assert [t.get_text() for t in accuracy.get_xticklabels()] == list(LITES)
    assert sorted(round(b.get_height(), 4) for b in seconds.patches) == [1.0, 2.0, 3.0, 30.0, 60.0, 90.0]
    assert len(parameters.patches) == 2 * 2 * 3  # all and trained, per technique and backbone


def test_the_sweep_writes_its_backbone_comparison_and_each_fine_tune_finds_its_own_head(tmp_path):
    sweep = backbone_sweep(tmp_path)
    assert sweeps.swept_keys(sweep) == {"technique", "backbone", "seed"}
    written = sweeps.comparison_files(sweep, config("visualize.dpi=30").visualize)
    assert [p.name for p in written] == [
        "backbone_comparison.json",
        "backbone_comparison.md",
        "backbone_comparison.png",
    ]
    markdown = (sweep / "backbone_comparison.md").read_text()
    low, high = wilson_interval(981, 996)  # the mean, 98.45 %, of 996 test images
    interval = f"{100 * low:.2f} % – {100 * high:.2f} %"
    lite2 = f"| efficientnet_lite2 | fine_tune | 2 (0, 1) | 98.45 % | {interval} | 98.40 % – 98.50 % | 90.0 | 10 |"
    assert f"{lite2} 5.20 M | 1.30 M |" in markdown
    assert not (sweep / "seed_comparison.json").exists()  # the seeds of different backbones are not averaged together
    parent = sweeps.sweep_comparison(sweep)  # what the sweep's MLflow run gets: one row per technique and backbone
    assert [r["technique"] for r in parent][:3] == [f"feature_extract/{b}" for b in LITES]
    # the fine-tune job of lite1 with seed 1 starts from the feature-extract job of lite1 with seed 1 (job 3)
    assert sweeps.sweep_head(sweep, 1, "efficientnet_lite1") == sweep / "3" / "best.ckpt"


def test_a_backbone_sweep_of_jobs_trained_on_different_manifests_is_not_averaged(tmp_path):
    """The check a seed sweep makes (evidence.one_study): one preset, one manifest; else every job is listed."""
    sweep = backbone_sweep(tmp_path)
    for number, job in enumerate(sorted(p for p in sweep.iterdir() if p.is_dir())):
        metrics = json.loads((job / "metrics.json").read_text())
        manifest = "0123456789ab" if number != 5 else "ba9876543210"  # one job trained on another split
        (job / "metrics.json").write_text(json.dumps({**metrics, "preset": "default", "manifest": manifest}))
    visualize = config("visualize.dpi=30").visualize
    with pytest.raises(DataError, match=r"different manifests \(0123456789ab, ba9876543210\)"):
        sweeps.write_sweep_comparison(sweep, visualize)
    assert sweeps.comparison_files(sweep, visualize) == []
    assert not (sweep / "backbone_comparison.json").exists()
    parent = sweeps.sweep_comparison(sweep)  # the sweep's MLflow run lists every job instead of means
    assert len(parent) == 12 and {r["technique"] for r in parent} == {"feature_extract", "fine_tune"}

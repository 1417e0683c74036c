"""The learning-rate finder (smallvision.lr_find) writes its suggested rate and curve, and the report shows them."""

from __future__ import annotations

import pytest
from helpers.study import config, make_dataset, paths


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("playbook"), per_class=40)


# ----------------------------------------------------------------------------------------------- LR finder


def test_lr_finder_writes_a_suggested_rate_and_its_curve_which_the_report_shows(study, tmp_path):
    from smallvision.lr_find import find_lr
    from smallvision.visualize.lr_finder import LR_FIND_JSON, LR_FIND_PNG, lr_find_section, read_lr_find
    from smallvision.visualize.plotting import save
    from smallvision.visualize.sections import Technique

    cfg = config(
        "technique=baseline",
        "techniques.baseline.batch_size=4",  # 10 batches an epoch: the test spends its time on steps, not epochs
        "lr_find.num_training=16",
        "lr_find.min_lr=1e-6",
        "lr_find.max_lr=1e-2",
    )
    out = paths(study, "lr_baseline")
    result = find_lr(cfg, out, progress=False)
    assert isinstance(result["suggestion"], float) and 1e-6 <= result["suggestion"] <= 1e-2
    assert 12 <= len(result["lr"]) == len(result["loss"]) <= 16 and result["lr"] == sorted(result["lr"])
    assert read_lr_find(out.out) == result  # lr_find.json
    assert (out.out / LR_FIND_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.out.glob("*.ckpt"))  # Lightning's restore point is removed

    class Report:  # what the section reads of visualize.sections.Report
        def __init__(self) -> None:
            self.trained = [Technique("baseline", out.out), Technique("augment", tmp_path / "no_finder_run")]
            self.saved: list = []

        def save(self, fig, name, technique=None):
            self.saved.append((name, technique))
            return save(fig, tmp_path / name, 40)

    report = Report()
    section = lr_find_section(report)
    assert [f.path.name for f in section.figures] == ["lr_find_baseline.png"]
    assert f"suggested {result['suggestion']:.2g}" in section.figures[0].caption
    assert (out.out / LR_FIND_JSON).is_file() and report.saved == [("lr_find_baseline.png", "baseline")]

"""The audit's findings in the report: each technique's flagged mistakes beside its accuracy (the section drawn from
an audit's files by the visualize stage: tests/e2e/test_audit_report.py)."""

from __future__ import annotations

import csv
from pathlib import Path

from smallvision import audit
from smallvision.runs import PREDICTION_COLUMNS, comparison_metrics
from smallvision.visualize import audit_findings, comparison, sections


def _predictions(folder: Path, rows: list[tuple[str, str, str]]) -> sections.Technique:
    folder.mkdir(parents=True)
    with open(folder / "test_predictions.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, PREDICTION_COLUMNS, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(
            {"path": p, "actual": a, "predicted": b, "probability": 0.9, "correct": int(a == b)} for p, a, b in rows
        )
    return sections.Technique(folder.name, folder)


def test_each_techniques_flagged_mistakes_stand_beside_its_accuracy(tmp_path):
    found = audit.Findings(
        [{"path": p, "split": "test", "label": "cat", "suggested": "dog", "score": 0.1} for p in ("a", "b", "z")],
        [],
        [],
        {},
    )
    baseline = _predictions(
        tmp_path / "baseline", [("a", "cat", "dog"), ("b", "cat", "dog"), ("c", "cat", "dog"), ("d", "dog", "dog")]
    )
    augment = _predictions(tmp_path / "augment", [("a", "cat", "cat"), ("b", "cat", "dog"), ("c", "dog", "dog")])
    rows = [
        {"technique": "baseline", "test_accuracy": 0.25, "test_images": 4},
        {"technique": "augment", "test_accuracy": 2 / 3, "test_images": 3},
        {"technique": "fine_tune", "test_accuracy": 0.5, "test_images": 4},  # not trained here: no predictions
    ]
    flagged = audit_findings.with_flagged_mistakes(rows, [baseline, augment], found)
    assert [(r.get("test_mistakes"), r.get("test_mistakes_flagged")) for r in flagged] == [(3, 2), (1, 1), (None, None)]
    assert [r["test_accuracy"] for r in flagged] == [0.25, 2 / 3, 0.5]  # beside, never replacing
    table = comparison.comparison_table(flagged, {})
    markdown = comparison.comparison_markdown(table, "book").splitlines()
    assert markdown[0].endswith(f"| {comparison.AUDIT_HEADER} |") and "| test accuracy |" in markdown[0]
    assert markdown[2].startswith("| baseline |") and markdown[2].endswith("| 2 of 3 |") and "25.0 %" in markdown[2]
    assert markdown[4].endswith("| — |")
    assert comparison_metrics(flagged)["baseline"]["test_mistakes_flagged"] == 2  # dvc metrics show, MLflow
    html_table = sections._comparison_html(table, "book")
    assert f"<th>{comparison.AUDIT_HEADER}</th>" in html_table and "<td class=num>2 of 3</td>" in html_table
    # without the audit: rows, table and page as before
    plain = audit_findings.with_flagged_mistakes(rows, [baseline, augment], None)
    assert plain == rows
    assert comparison.AUDIT_HEADER not in comparison.comparison_markdown(comparison.comparison_table(plain, {}), "b")

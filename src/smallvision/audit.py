"""The data audit: which labels are probably wrong, which images are near-copies of each other (a test image that
is a resized, recompressed or cropped copy of a training image leaks it), and which images are off-task (neither
class), all read from the frozen backbone's features.

- label errors: out-of-fold class probabilities from a k-fold logistic regression on the features (no image is
  scored by a model that saw it), ranked by confident learning (cleanlab);
- near-duplicates: pairs of images whose L2-normalised features have a cosine similarity at or above a threshold;
  a pair across train/val and test is leakage;
- off-task: the images least like their nearest neighbours in feature space (cleanlab's `OutOfDistribution`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from smallvision.data.manifest import Record
from smallvision.errors import DataError
from smallvision.files import atomic_write

if TYPE_CHECKING:  # the stage registry imports this module's file names without the schema (and torch)
    from smallvision.schema import Audit

LABEL_ISSUES, DUPLICATES, OFF_TASK, SUMMARY = "label_issues.csv", "near_duplicates.csv", "off_task.csv", "summary.json"
LEAKING = {frozenset(("train", "test")), frozenset(("val", "test"))}  # split pairs whose shared image is leakage
_BLOCK = 1024  # rows of the similarity matrix computed at once: 1024 x N floats


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (float32): their dot products are cosine similarities."""
    feats = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return feats / np.maximum(norms, np.finfo(np.float32).tiny)


def out_of_fold_probabilities(
    features: np.ndarray, labels: np.ndarray, folds: int, regularisation: float, max_iter: int, seed: int
) -> np.ndarray:
    """Class probabilities of every image from a logistic regression fitted on the other folds only."""
    # imported here, as cleanlab below: the stage registry reads this module's file names without loading them
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    counts = np.bincount(labels)
    if counts.min() < folds:
        raise DataError(
            f"a class has {counts.min()} images, fewer than audit.folds={folds}: lower audit.folds or add images"
        )
    x = unit_rows(features)
    probs = np.zeros((len(labels), len(counts)))
    for fit, held in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(x, labels):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=regularisation, max_iter=max_iter))
        model.fit(x[fit], labels[fit])
        probs[np.ix_(held, model.classes_)] = model.predict_proba(x[held])
    return probs


@dataclass(frozen=True)
class LabelIssues:
    """The images whose given label confident learning doubts, most doubtful first, and every image's quality."""

    ranked: np.ndarray  # indices of the flagged images, lowest label quality first
    quality: np.ndarray  # every image's label quality score in [0, 1] (low: probably mislabelled)
    suggested: np.ndarray  # every image's most probable class (out of fold)


def label_issues(labels: np.ndarray, probs: np.ndarray) -> LabelIssues:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    return LabelIssues(np.asarray(ranked, dtype=np.int64), quality, probs.argmax(axis=1))


def near_duplicates(features: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """Pairs (i, j, similarity), i < j, whose cosine similarity is at least `threshold`, most similar first;
    computed a block of rows at a time so 25,000 images need no 25,000² matrix."""
    unit = unit_rows(features)
    pairs: list[tuple[int, int, float]] = []
    for start in range(0, len(unit), _BLOCK):
        sims = unit[start : start + _BLOCK] @ unit.T
        rows, cols = np.nonzero(sims >= threshold)
        keep = cols > rows + start
        pairs += [(int(r + start), int(c), float(sims[r, c])) for r, c in zip(rows[keep], cols[keep], strict=True)]
    return sorted(pairs, key=lambda p: (-p[2], p[0], p[1]))


def off_task_scores(features: np.ndarray, neighbours: int) -> np.ndarray:
    """Every image's typicality in [0, 1] among the others' features (low: an outlier, likely neither class)."""
    from cleanlab.outlier import OutOfDistribution

    unit = unit_rows(features)
    k = min(neighbours, len(unit) - 1)
    return OutOfDistribution(params={"k": k}).fit_score(features=unit, verbose=False)


@dataclass(frozen=True)
class Findings:
    """What the audit found, as rows ready to write."""

    label_issues: list[dict]
    duplicates: list[dict]
    off_task: list[dict]
    summary: dict


def audit(features: np.ndarray, records: Sequence[Record], classes: Sequence[str], opts: Audit, seed: int) -> Findings:
    """The audit of the images `records` lists (one row of `features` each)."""
    if len(features) != len(records):
        raise DataError(f"{len(features)} feature rows for {len(records)} images: rebuild the feature cache")
    labels = np.array([r.target for r in records], dtype=np.int64)
    probs = out_of_fold_probabilities(features, labels, opts.folds, opts.regularisation, opts.max_iter, seed)
    issues = label_issues(labels, probs)

    def row(i: int, score: float) -> dict:
        r, suggested = records[i], classes[issues.suggested[i]]
        return {"path": r.path, "split": r.split, "label": r.label, "suggested": suggested, "score": round(score, 6)}

    label_rows = [row(i, float(issues.quality[i])) for i in issues.ranked]
    typical = off_task_scores(features, opts.neighbours)
    flagged = round(opts.off_task_share * len(records))
    off_rows = [row(i, float(typical[i])) for i in np.argsort(typical, kind="stable")[:flagged]]
    dup_rows = []
    for i, j, sim in near_duplicates(features, opts.duplicate_threshold):
        a, b = records[i], records[j]
        dup_rows.append(
            {
                "path_a": a.path,
                "split_a": a.split,
                "label_a": a.label,
                "path_b": b.path,
                "split_b": b.split,
                "label_b": b.label,
                "similarity": round(sim, 6),
                "leakage": frozenset((a.split, b.split)) in LEAKING,
            }
        )
    leaks = [d for d in dup_rows if d["leakage"]]
    summary = {
        "images": len(records),
        "label_issues": len(label_rows),
        "near_duplicate_pairs": len(dup_rows),
        "leakage_pairs": len(leaks),
        "leakage_train_test": sum({d["split_a"], d["split_b"]} == {"train", "test"} for d in leaks),
        "leakage_val_test": sum({d["split_a"], d["split_b"]} == {"val", "test"} for d in leaks),
        "test_images_leaked": len({d["path_a"] if d["split_a"] == "test" else d["path_b"] for d in leaks}),
        "off_task": len(off_rows),
        "out_of_fold_accuracy": round(float(np.mean(issues.suggested == labels)), 6),
    }
    return Findings(label_rows, dup_rows, off_rows, summary)


_LIST_COLUMNS = ("path", "split", "label", "suggested", "score")
_PAIR_COLUMNS = ("path_a", "split_a", "label_a", "path_b", "split_b", "label_b", "similarity", "leakage")


def _write_csv(path: Path, columns: Sequence[str], rows: list[dict]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)


def write_findings(out: Path, found: Findings) -> None:
    """The three lists as CSVs and the counts as `summary.json` (DVC metrics) under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / LABEL_ISSUES, _LIST_COLUMNS, found.label_issues)
    _write_csv(out / DUPLICATES, _PAIR_COLUMNS, found.duplicates)
    _write_csv(out / OFF_TASK, _LIST_COLUMNS, found.off_task)
    atomic_write(out / SUMMARY, lambda tmp: tmp.write_text(json.dumps(found.summary, indent=2) + "\n"))


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def read_findings(out: Path) -> Findings | None:
    """The audit's lists and counts as `write_findings` wrote them under `out`; None when the audit has not run
    (no `summary.json`). A list file missing beside it is a DataError naming it."""
    out = Path(out)
    if not (out / SUMMARY).is_file():
        return None
    lists = {}
    for name in (LABEL_ISSUES, DUPLICATES, OFF_TASK):
        if not (out / name).is_file():
            raise DataError(f"{out / name} is missing beside {SUMMARY}: rerun the audit stage (dvc repro audit)")
        lists[name] = _read_csv(out / name)
    try:
        for row in (*lists[LABEL_ISSUES], *lists[OFF_TASK]):
            row["score"] = float(row["score"])
        for row in lists[DUPLICATES]:
            row["similarity"], row["leakage"] = float(row["similarity"]), row["leakage"] == "True"
        summary = json.loads((out / SUMMARY).read_text(encoding="utf-8"))
    except (KeyError, ValueError) as err:
        raise DataError(f"{out}: an audit file is not as the audit stage writes it ({err}); rerun it") from None
    return Findings(lists[LABEL_ISSUES], lists[DUPLICATES], lists[OFF_TASK], summary)


def flagged_mistakes(wrong: Sequence[str], found: Findings) -> int:
    """How many of the images `wrong` (a technique's test mistakes, by manifest path) the audit lists as probable
    label errors: mistakes that may be the label's, not the network's."""
    doubted = {row["path"] for row in found.label_issues}
    return len(set(wrong) & doubted)

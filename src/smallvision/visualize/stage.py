"""The visualize stage: read every trained technique and the test split, write reports/ (figures, comparison and
index.html). The entry script logs what it wrote to MLflow (`StudyTracker.log_report`).

`run_visualize(settings, root)` takes the typed settings (settings.visualize holds every knob) and the project
root. A technique that was not trained (a missing file) is skipped with a note on the page.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from smallvision import evidence, provenance
from smallvision.audit import read_findings
from smallvision.data.augmentation import AffineConfig
from smallvision.data.images import load_resized
from smallvision.data.manifest import MANIFEST, load_manifest, manifest_digest
from smallvision.networks import input_resize
from smallvision.runs import CHECKPOINT, METRICS
from smallvision.schema import Settings
from smallvision.schema_techniques import Modern
from smallvision.schema_visualize import Visualize
from smallvision.visualize import audit_findings, comparison, sections, sections_learned
from smallvision.visualize.lr_finder import lr_find_section
from smallvision.visualize.report import write_index
from smallvision.visualize.settings import check_device

log = logging.getLogger(__name__)

INDEX = "index.html"
# the files this stage writes into the reports folder; older ones are removed first, so none is stale
OWN_PATTERNS = (
    "comparison.*",
    "curves_*.png",
    "gradcam_*.png",
    "activations_*.png",
    "filters_*.png",
    "mistakes_*.png",
    "augmentation_preview*.png",
    "confusion_*.png",
    "finetuning.png",
    "pairs_*.png",
    "patches_*.png",
    "kernels_*.png",
    "lr_find_*.png",
    "audit_*.png",
    INDEX,
)
# the page's sections after the comparison, in order; one whose cfg.visualize.<name>.enabled is false is left out
SECTIONS = {
    "curves": sections.curves_section,
    "confusion": sections_learned.confusion_section,
    "gradcam": sections.gradcam_section,
    "finetuning": sections_learned.finetuning_section,
    "activations": sections.activations_section,
    "filters": sections.filters_section,
    "pairs": sections_learned.pairs_section,
    "patches": sections_learned.patches_section,
    "kernels": sections_learned.kernels_section,
    "augmentation": sections.augmentation_section,
    "mistakes": sections.mistakes_section,
    "audit": audit_findings.audit_section,
    "lr_find": lr_find_section,
}


@dataclass
class Outcome:
    """What the stage produced: figures per technique (for the child runs), study-level files, notes, timing."""

    reports: Path
    index: Path | None = None
    per_technique: dict[str, list[Path]] = field(default_factory=dict)
    study_files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    metrics: Path | None = None  # the comparison's numbers as a DVC metrics file (cfg.paths.comparison)
    audit: dict[str, float] = field(default_factory=dict)  # the data audit's counts, "audit.<key>", where it has run


def _device(name: str) -> torch.device:
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def _timed(out: Outcome, step: str, draw, *args):
    start = time.perf_counter()
    try:
        return draw(*args)
    finally:
        out.timings[step] = out.timings.get(step, 0.0) + time.perf_counter() - start
        log.info("visualize: %s done in %.1f s", step, out.timings[step])


def run_visualize(settings: Settings, root: Path) -> Outcome:
    """Write every figure, comparison.{png,md,json} and index.html into settings.paths.reports (relative to
    `root`)."""
    started = time.perf_counter()
    visualize, folders = settings.visualize, settings.paths
    check_device(visualize.device)
    root = Path(root)
    reports, models = root / folders.reports, root / folders.models
    records, classes = load_manifest(root / folders.prepared)
    reports.mkdir(parents=True, exist_ok=True)
    for pattern in OWN_PATTERNS:
        for old in reports.glob(pattern):
            old.unlink()
    if visualize.threads:
        torch.set_num_threads(visualize.threads)
    out = Outcome(reports)
    trained = []
    for t in (sections.Technique(name, models / name) for name in visualize.techniques):
        lacking = t.missing(CHECKPOINT, METRICS)
        if lacking:
            out.notes.append(
                f"{t.name}: skipped, not trained yet ({', '.join(lacking)} missing in {t.folder}); "
                f"run its training stage (dvc repro)"
            )
        else:
            trained.append(t)
    # one study only: a technique trained with another preset, seed or manifest is left out of every section
    digest = manifest_digest(root / folders.prepared / MANIFEST)
    study = evidence.study_comparison(models, provenance.identity(settings, digest), {t.name for t in trained})
    trained = [t for t in trained if t.name not in study.excluded]
    out.notes += study.messages()
    found = read_findings(root / folders.audit)
    rows = audit_findings.with_flagged_mistakes(study.rows, trained, found)
    out.audit = audit_findings.summary_metrics(found)
    report = sections.Report(
        visualize=visualize,
        augmentation=AffineConfig.of(settings.augmentation),
        # the techniques that train on transforms of their own, as training.augmentation picks them
        own_augmentations={
            name: AffineConfig.of(tech.augmentation)
            for name, tech in settings.techniques.items()
            if isinstance(tech, Modern)
        },
        image_sizes={name: input_resize(tech, settings.backbone) for name, tech in settings.techniques.items()},
        folder=reports,
        records=records,
        classes=classes,
        load=functools.partial(load_resized, limits=settings.data.image_limits),
        trained=trained,
        nets=sections.Nets(_device(visualize.device)),
        notes=out.notes,
        audit=found,
        audit_folder=folders.audit,
    )
    page = [_timed(out, "comparison", sections.comparison_section, report, rows, study.excluded)]
    page += [_timed(out, step, draw, report) for step, draw in SECTIONS.items() if enabled(visualize, step)]
    out.rows, out.per_technique, out.study_files = report.rows, report.per_technique, report.study_files
    out.metrics = comparison.write_comparison_metrics(out.rows, root / folders.comparison)
    out.timings["total"] = time.perf_counter() - started
    footer = (
        f"Stage time: {timing_summary(out)}. Device: {report.nets.device}. "
        "Written by pipelines/visualize.py (dvc repro visualize)."
    )
    out.index = write_index(
        reports / INDEX,
        page,
        f"smallvision study: {settings.preset} preset",
        f"Dataset {settings.data.name}: {len(report.split('test'))} test images, classes {', '.join(classes)}.",
        footer,
    )
    out.study_files.append(out.index)
    return out


def enabled(visualize: Visualize, step: str) -> bool:
    """Whether a section is drawn: its switch `visualize.<step>.enabled`, where it has one."""
    return getattr(getattr(visualize, step, None), "enabled", True)


def timing_summary(out: Outcome) -> str:
    """One line: seconds per step and in total."""
    return ", ".join(f"{k} {s:.1f} s" for k, s in out.timings.items())

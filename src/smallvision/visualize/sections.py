"""The report's sections, one function each: it draws its figures into the reports folder and returns the
page's section. Every function takes the `Report` being built (what the stage read, and what it has written)."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from smallvision.audit import Findings
from smallvision.data.augmentation import AffineConfig
from smallvision.data.images import Resize
from smallvision.data.manifest import Record
from smallvision.data.preprocess import network_input
from smallvision.networks import FROM_SCRATCH, load_checkpoint, spec_resize
from smallvision.runs import CHECKPOINT, HISTORY, PREDICTIONS, PredictionRow, read_history, read_predictions
from smallvision.schema_visualize import Filters, Visualize
from smallvision.visualize import activations, augmentation_preview, comparison, curves, filters, gradcam, mistakes
from smallvision.visualize.layers import activation_layers, cam_layer, filter_layers
from smallvision.visualize.plotting import save
from smallvision.visualize.report import FigureEntry, Section, table_html
from smallvision.visualize.settings import pick


@dataclass
class Technique:
    """One technique's training outputs in models/<name>/."""

    name: str
    folder: Path

    def file(self, name: str) -> Path:
        return self.folder / name

    def missing(self, *names: str) -> list[str]:
        return [n for n in names if not self.file(n).is_file()]


class Nets:
    """Trained networks loaded once each (a transfer checkpoint takes seconds to rebuild)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._nets: dict[str, tuple[nn.Module, dict]] = {}

    def get(self, technique: Technique) -> tuple[nn.Module, dict]:
        if technique.name not in self._nets:
            net, spec = load_checkpoint(technique.file(CHECKPOINT), pretrained_base=False)
            self._nets[technique.name] = (net.to(self.device).eval(), spec)
        return self._nets[technique.name]

    def inputs(self, images: np.ndarray, spec: dict) -> torch.Tensor:
        return network_input(images, spec["mean"], spec["std"]).to(self.device)


@dataclass
class Report:
    """What the sections read (config, manifest, trained techniques, networks) and what they have written:
    figures per technique (for the MLflow child runs), study-level files and the comparison rows."""

    visualize: Visualize
    augmentation: AffineConfig  # the `augmentation` group's transforms
    own_augmentations: Mapping[str, AffineConfig]  # technique -> the transforms of its own (modern), not the group's
    image_sizes: Mapping[str, Resize]  # technique -> how its photos are resized for training (size, squash or crop)
    folder: Path
    records: list[Record]
    classes: list[str]
    load: Callable[[Path, int | Resize], np.ndarray]  # an image file at a size or geometry, as training decoded it
    trained: list[Technique]
    nets: Nets
    notes: list[str]  # techniques skipped (not trained), for the comparison section
    audit: Findings | None = None  # the audit stage's findings; None where it has not run
    audit_folder: str = ""  # where they are read from (cfg.paths.audit), for the note when it has not run
    rows: list[dict] = field(default_factory=list)
    per_technique: dict[str, list[Path]] = field(default_factory=dict)
    study_files: list[Path] = field(default_factory=list)

    @property
    def dpi(self) -> int:
        return self.visualize.dpi

    def split(self, name: str) -> list[Record]:
        return [r for r in self.records if r.split == name]

    def record(self, path: str) -> Record | None:
        return self._by_path.get(path)

    def __post_init__(self) -> None:
        self._by_path = {r.path: r for r in self.records}

    def technique(self, name: str) -> Technique:
        return next(t for t in self.trained if t.name == name)

    def save(self, fig, name: str, technique: str | None = None) -> Path:
        path = save(fig, self.folder / name, self.dpi)
        if technique is None:
            self.study_files.append(path)
        else:
            self.per_technique.setdefault(technique, []).append(path)
        return path

    def chosen(self, wanted: list[str], section: Section, option: str) -> list[str]:
        """The configured techniques that were trained; the others get a note."""
        names = {t.name for t in self.trained}
        missing = [t for t in wanted if t not in names]
        if missing:
            section.notes.append(f"not shown (not trained): {', '.join(missing)} (visualize.{option}.techniques)")
        return [t for t in wanted if t in names]


def comparison_section(report: Report, rows: list[dict], excluded: Mapping[str, str] | None = None) -> Section:
    """`rows`: the study's techniques, each with its step against the one before it (`evidence.study_comparison`);
    `excluded`: the runs left out of it (technique -> why)."""
    options = report.visualize
    report.rows = rows
    table = comparison.comparison_table(rows, options.reference)
    sec = Section(
        "comparison",
        "Comparison",
        f"Test accuracy of each technique with its 95 % interval; red marks: {options.reference_label}. Between "
        "consecutive techniques: the paired step on the same test images, with McNemar's exact p-value.",
    )
    if table:
        json_path, md_path = comparison.write_comparison(table, options.reference_label, report.folder, excluded)
        fig = report.save(
            comparison.comparison_figure(table, options.reference_label, chance=1 / len(report.classes)),
            "comparison.png",
        )
        report.study_files += [md_path, json_path]
        sec.figures.append(
            FigureEntry(
                fig,
                "Test accuracy per technique (bars), 95 % interval (error bars), the "
                "book's numbers (red marks), chance (dashed); above each pair of neighbours, the accuracy "
                "difference on the same test images and McNemar's exact p-value.",
            )
        )
        sec.html = _comparison_html(table, options.reference_label)
    sec.notes += report.notes
    return sec


def curves_section(report: Report) -> Section:
    sec = Section(
        "curves",
        "Training curves",
        "Training vs validation accuracy and loss per epoch: where they part, the net overfits.",
    )
    for t in report.trained:
        if t.missing(HISTORY):
            sec.notes.append(f"{t.name}: no {HISTORY}")
            continue
        fig = curves.curves_figure(
            curves.history_columns(read_history(t.file(HISTORY))),
            t.name,
            float(report.visualize.curves.smoothing),
        )
        path = report.save(fig, f"curves_{t.name}.png", t.name)
        sec.figures.append(FigureEntry(path, f"{t.name}: accuracy and loss per epoch."))
    return sec


def gradcam_section(report: Report) -> Section:
    sec = Section(
        "gradcam",
        "Class activation heatmaps (Grad-CAM)",
        "Where each network looks: Grad-CAM of the predicted class on its last conv feature map, for "
        "correctly and wrongly classified test images (most confident first). Red titles: wrong predictions.",
    )
    per_group = int(report.visualize.gradcam.per_group)
    for t in report.trained:
        if t.missing(PREDICTIONS):
            sec.notes.append(f"{t.name}: no {PREDICTIONS}")
            continue
        rows = read_predictions(t.file(PREDICTIONS))
        unknown = [row.path for row in rows if report.record(row.path) is None]
        if unknown:
            sec.notes.append(
                f"{t.name}: {len(unknown)} test predictions name images not in the manifest "
                f"(e.g. {unknown[0]}): its model is older than the split; retrain it"
            )
            continue
        chosen = {
            "correct": _balanced([row for row in rows if row.correct], per_group, report.classes),
            "wrong": mistakes.most_confident_mistakes(rows, per_group),
        }
        net, spec = report.nets.get(t)
        flat = [row for group in chosen.values() for row in group]
        records = [report.record(row.path) for row in flat]
        images = np.stack([report.load(rec.file, spec_resize(spec)) for rec in records]) if flat else np.zeros((0,))
        layer_name, layer = cam_layer(net)
        explained = gradcam.explain(
            net,
            layer,
            images,
            report.nets.inputs(images, spec) if flat else None,
            [rec.target for rec in records],
            [row.path for row in flat],
        )
        groups, k = {}, 0
        for group, items in chosen.items():
            groups[group] = explained[k : k + len(items)]
            k += len(items)
        fig = gradcam.gradcam_figure(
            groups,
            spec["classes"],
            f"Grad-CAM, {t.name} (layer {layer_name})",
            per_group,
            float(report.visualize.gradcam.image_weight),
        )
        path = report.save(fig, f"gradcam_{t.name}.png", t.name)
        sec.figures.append(
            FigureEntry(
                path,
                f"{t.name}: heatmaps of the predicted class on {layer_name}; "
                "title: predicted class and probability, true class.",
            )
        )
    return sec


def activations_section(report: Report) -> Section:
    options = report.visualize
    sec = Section(
        "activations",
        "Intermediate activations",
        "Every channel of the book's convnet's conv and pool layers, of the modern convnet's stem and blocks "
        "(each block's output, after its residual add), and of the first, middle and last "
        "stage of the pretrained base, for one test image. Each channel is standardised for display; grey "
        "tiles: channels that stay constant (blank) on this image.",
    )
    record = pick(report.split("test"), options.test_image, "test_image")
    for name in report.chosen(options.activations.techniques, sec, "activations"):
        net, spec = report.nets.get(report.technique(name))
        image = report.load(record.file, spec_resize(spec))
        acts = activations.layer_activations(
            net, report.nets.inputs(image[None], spec), activation_layers(net), options.activations.max_channels
        )
        fig = activations.activation_figure(
            image,
            acts,
            f"Activations of {name} for test image {record.path} ({record.label})",
            int(options.activations.columns),
        )
        path = report.save(fig, f"activations_{name}.png", name)
        sec.figures.append(FigureEntry(path, f"{name}: layers {', '.join(a.name for a in acts)}."))
    return sec


def filters_section(report: Report) -> Section:
    opts = report.visualize.filters
    sec = Section(
        "filters",
        "Filter patterns",
        f"The input that maximises each filter's mean activation: {opts.steps} steps of normalised gradient "
        f"ascent (step {opts.step_size} grey levels) from a grey image with noise. Panel titles: mean "
        "activation before -> after.",
    )
    for name in report.chosen(opts.techniques, sec, "filters"):
        net, spec = report.nets.get(report.technique(name))
        option = "scratch_layers" if spec["network"] in FROM_SCRATCH else "transfer_layers"
        size = int(opts.image_size or spec["image_size"])
        patterns = {}
        for layer_name, module in filter_layers(net, getattr(opts, option), f"visualize.filters.{option}"):
            indices = filters.pick_filters(filters.layer_channels(net, module, size), int(opts.per_layer))
            patterns[layer_name] = ascend(net, spec, [(layer_name, module, i) for i in indices], opts)
        path = report.save(
            filters.filters_figure(patterns, f"Filter patterns of {name}", int(opts.columns)),
            f"filters_{name}.png",
            name,
        )
        sec.figures.append(
            FigureEntry(path, f"{name}: {int(opts.per_layer)} filters of each of {', '.join(patterns)}.")
        )
    return sec


def ascend(
    net: nn.Module, spec: dict, targets: list[tuple[str, nn.Module, int]], opts: Filters
) -> list[filters.FilterPattern]:
    """`filters.target_patterns` of the targets (layer name, module, filter), all in one batch, with the
    `visualize.filters` settings `opts` and the network's own input size and normalisation."""
    return filters.target_patterns(
        net,
        targets,
        image_size=int(opts.image_size or spec["image_size"]),
        mean=spec["mean"],
        std=spec["std"],
        steps=int(opts.steps),
        step_size=float(opts.step_size),
        noise=float(opts.noise),
        seed=int(opts.seed),
    )


def augmentation_section(report: Report) -> Section:
    opts = report.visualize.augmentation_preview
    sec = Section(
        "augmentation",
        "Augmentation preview",
        "One training image and random augmentations of it, drawn as training draws them (the "
        "`augmentation` config group); then the same image under the transforms of each technique that has its own "
        "(the modern convnet's, `techniques.modern.augmentation`).",
    )
    record = pick(report.split("train"), opts.image, "augmentation_preview.image")
    own = [(t, report.own_augmentations[t], t) for t in report.visualize.techniques if t in report.own_augmentations]
    # (whose image size, transforms, whose own transforms: "" for the group's), the group's first
    for sized_as, aug_cfg, technique in [(opts.technique, report.augmentation, ""), *own]:
        resize = report.image_sizes[sized_as]
        image = report.load(record.file, resize)
        copies = augmentation_preview.augmented_copies(image, aug_cfg, int(opts.count), int(opts.seed))
        figure = augmentation_preview.augmentation_figure(
            image, copies, aug_cfg, int(opts.columns), record.path, technique=technique
        )
        path = report.save(figure, f"augmentation_preview_{technique}.png" if technique else "augmentation_preview.png")
        whose = f" with {technique}'s own transforms" if technique else ""
        sec.figures.append(
            FigureEntry(
                path, f"{record.path} at {resize.size} px ({resize.mode}) and {len(copies)} augmentations{whose}."
            )
        )
    return sec


def mistakes_section(report: Report) -> Section:
    opts = report.visualize.mistakes
    sec = Section(
        "mistakes",
        "Mistakes",
        "The test images a technique gets wrong, the most confident mistakes first: true class -> predicted "
        "class and its probability.",
    )
    owner = _mistakes_technique(opts.technique, report.rows, {t.name for t in report.trained})
    t = next((x for x in report.trained if x.name == owner), None)
    if t is None:
        sec.notes.append(f"no mistakes gallery: {opts.technique!r} has not been trained")
    elif t.missing(PREDICTIONS):
        sec.notes.append(f"no mistakes gallery: {t.name} has no {PREDICTIONS}")
    else:
        rows = read_predictions(t.file(PREDICTIONS))
        wrong = [
            row
            for row in mistakes.most_confident_mistakes(rows, int(opts.max_images))
            if report.record(row.path) is not None
        ]
        # each photo as the technique's network gets it (a transfer base: centre-cropped), at the gallery's size
        geometry = replace(report.image_sizes[t.name], size=int(opts.image_size))
        images = [report.load(report.record(row.path).file, geometry) for row in wrong]
        fig = mistakes.mistakes_figure(
            images, wrong, t.name, sum(not row.correct for row in rows), len(rows), int(opts.columns)
        )
        path = report.save(fig, f"mistakes_{t.name}.png", t.name)
        sec.figures.append(
            FigureEntry(
                path,
                f"{t.name}"
                + (" (the best technique)" if opts.technique == "best" else "")
                + ": its wrong test predictions.",
            )
        )
    return sec


def _balanced(rows: list[PredictionRow], count: int, classes: list[str]) -> list[PredictionRow]:
    """Up to `count` rows taking the classes in turn, each class's most confident first."""
    queues = [sorted((r for r in rows if r.actual == c), key=lambda r: (-r.probability, r.path)) for c in classes]
    picked: list[PredictionRow] = []
    while len(picked) < count and any(queues):
        for q in queues:
            if q and len(picked) < count:
                picked.append(q.pop(0))
    return picked


def _mistakes_technique(choice: str, rows: list[dict], trained: set[str]) -> str | None:
    if choice != "best":
        return choice
    scored = [r for r in rows if isinstance(r.get("test_accuracy"), (int, float)) and r.get("technique") in trained]
    return max(scored, key=lambda r: r["test_accuracy"])["technique"] if scored else None


def _comparison_html(table: list[dict], reference_label: str) -> str:
    """The comparison with each step's paired test, then where each row came from."""
    audit = comparison.audited(table)
    numeric = comparison.NUMERIC_CELLS | ({len(comparison.HEADERS)} if audit else set())
    return (
        table_html(
            comparison.headers(table, reference_label), [comparison.table_cells(r, audit) for r in table], numeric
        )
        + f"<p>{html.escape(comparison.TESTS_NOTE)}</p>"
        + "".join(f"<p>{html.escape(note)}</p>" for note in comparison.kept_start_notes(table))
        + "<p>Where each row came from:</p>"
        + table_html(list(comparison.PROVENANCE_HEADERS), [comparison.provenance_cells(r) for r in table])
    )

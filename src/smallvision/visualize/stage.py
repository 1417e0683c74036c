"""The visualize stage: read every trained technique and the test split, write reports/, log figures to MLflow.

`run_visualize(cfg, root)` takes the resolved config as plain containers (cfg.visualize holds every knob)
and the project root. A technique that was not trained (a missing file) is skipped with a note on the
page; tracking failures only warn.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from smallvision.data.augmentation import AffineConfig
from smallvision.data.images import DEFAULT_MAX_PIXELS, load_resized
from smallvision.data.split import Record, load_manifest
from smallvision.errors import ConfigError
from smallvision.metrics import comparison_rows  # the same rows training logs on the study run
from smallvision.predict import normalise
from smallvision.techniques import load_checkpoint
from smallvision.visualize import activations, augmentation_preview, comparison, curves, filters, gradcam, mistakes
from smallvision.visualize.layers import activation_layers, cam_layer, filter_layers
from smallvision.visualize.plotting import save
from smallvision.visualize.report import FigureEntry, Section, table_html, write_index

log = logging.getLogger(__name__)

CHECKPOINT, METRICS, HISTORY, PREDICTIONS = "best.ckpt", "metrics.json", "history.csv", "test_predictions.csv"
INDEX = "index.html"
# the files this stage writes into the reports folder; older ones are removed first, so none is stale
OWN_PATTERNS = ("comparison.*", "curves_*.png", "gradcam_*.png", "activations_*.png", "filters_*.png",
                "mistakes_*.png", "augmentation_preview.png", INDEX)


@dataclass
class Technique:
    """One technique's training outputs in models/<name>/ and which of them are missing."""

    name: str
    folder: Path

    def file(self, name: str) -> Path:
        return self.folder / name

    def missing(self, *names: str) -> list[str]:
        return [n for n in names if not self.file(n).is_file()]


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

    def add(self, technique: str, path: Path) -> Path:
        self.per_technique.setdefault(technique, []).append(path)
        return path


# ----------------------------------------------------------------------------------------------- config


def _positive_int(v: Mapping, key: str, option: str, allow_zero: bool = False) -> int:
    value = v[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise ConfigError(f"visualize.{option}={value!r} must be a whole number {'>= 0' if allow_zero else '>= 1'}")
    return value


def validate(v: Mapping[str, Any], known: list[str]) -> None:
    """Check cfg.visualize before any work; every message names the key and the fix."""
    for option in ("techniques", "activations.techniques", "filters.techniques"):
        node, key = (v, option) if "." not in option else (v[option.split(".")[0]], option.split(".")[1])
        names = node[key]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"visualize.{option}={names!r} must be a list of technique names, e.g. [augment, fine_tune]")
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(f"visualize.{option} names unknown technique(s) {unknown}; known: {', '.join(known)}")
    for option, node, key, zero in (("dpi", v, "dpi", False), ("activations.columns", v["activations"], "columns", False),
                                    ("filters.per_layer", v["filters"], "per_layer", False),
                                    ("filters.columns", v["filters"], "columns", False),
                                    ("filters.steps", v["filters"], "steps", True),
                                    ("gradcam.per_group", v["gradcam"], "per_group", False),
                                    ("augmentation_preview.count", v["augmentation_preview"], "count", False),
                                    ("augmentation_preview.columns", v["augmentation_preview"], "columns", False),
                                    ("mistakes.max_images", v["mistakes"], "max_images", False),
                                    ("mistakes.columns", v["mistakes"], "columns", False),
                                    ("mistakes.image_size", v["mistakes"], "image_size", False)):
        _positive_int(node, key, option, zero)
    if v["threads"] is not None:
        _positive_int(v, "threads", "threads")
    if v["activations"]["max_channels"] is not None:
        _positive_int(v["activations"], "max_channels", "activations.max_channels")
    if v["filters"]["image_size"] is not None:
        _positive_int(v["filters"], "image_size", "filters.image_size")
    smoothing = v["curves"]["smoothing"]
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not 0 <= smoothing < 1:
        raise ConfigError(f"visualize.curves.smoothing={smoothing!r} must be in [0, 1) (0: raw curves; the book uses 0.8)")
    weight = v["gradcam"]["image_weight"]
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
        raise ConfigError(f"visualize.gradcam.image_weight={weight!r} must be in [0, 1] (the image's share of the overlay)")
    for option in ("step_size", "noise"):
        value = v["filters"][option]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"visualize.filters.{option}={value!r} must be a number >= 0")
    if v["device"] not in ("cpu", "cuda", "auto"):
        raise ConfigError(f"visualize.device={v['device']!r} must be cpu, cuda or auto")
    if v["device"] == "cuda" and not torch.cuda.is_available():
        raise ConfigError("visualize.device=cuda but no CUDA device is available: use visualize.device=cpu or auto")
    mistakes_of = v["mistakes"]["technique"]
    if mistakes_of != "best" and mistakes_of not in known:
        raise ConfigError(f"visualize.mistakes.technique={mistakes_of!r} must be 'best' or one of {', '.join(known)}")
    if v["augmentation_preview"]["technique"] not in known:
        raise ConfigError(f"visualize.augmentation_preview.technique={v['augmentation_preview']['technique']!r} must be "
                          f"one of {', '.join(known)} (its image size is used)")


def _pick(records: list[Record], which: int | str, option: str) -> Record:
    """A record by index into the split or by its manifest path."""
    if isinstance(which, str):
        for r in records:
            if r.path == which:
                return r
        raise ConfigError(f"visualize.{option}={which!r} is not a path of that split in the manifest "
                          f"(e.g. {records[0].path!r}); give a manifest path or an index")
    if isinstance(which, bool) or not isinstance(which, int) or not -len(records) <= which < len(records):
        raise ConfigError(f"visualize.{option}={which!r}: the split has {len(records)} images; "
                          f"give an index from 0 to {len(records) - 1} or a manifest path")
    return records[which]


# ----------------------------------------------------------------------------------------------- helpers


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


@contextmanager
def _timed(outcome: Outcome, step: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        outcome.timings[step] = outcome.timings.get(step, 0.0) + time.perf_counter() - start
        log.info("visualize: %s done in %.1f s", step, outcome.timings[step])


def _device(name: str) -> torch.device:
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def _inputs(images: np.ndarray, spec: dict, device: torch.device) -> torch.Tensor:
    return normalise(np.array(images, dtype=np.uint8), spec).to(device)  # a writable copy for torch.from_numpy


def _balanced(rows: list[mistakes.PredictionRow], count: int, classes: list[str]) -> list[mistakes.PredictionRow]:
    """Up to `count` rows taking the classes in turn, each class's most confident first."""
    queues = [sorted((r for r in rows if r.actual == c), key=lambda r: (-r.probability, r.path)) for c in classes]
    picked: list[mistakes.PredictionRow] = []
    while len(picked) < count and any(queues):
        for q in queues:
            if q and len(picked) < count:
                picked.append(q.pop(0))
    return picked


# ----------------------------------------------------------------------------------------------- the stage


def run_visualize(cfg: Mapping[str, Any], root: Path, tracker_factory: Callable[[], Any] | None = None) -> Outcome:
    """Write every figure, comparison.{png,md,json} and index.html into cfg.paths.reports (relative to `root`).

    `tracker_factory` returns a StudyTracker (None: no MLflow logging).
    """
    started = time.perf_counter()
    v = cfg["visualize"]
    known = list(cfg["techniques"])
    validate(v, known)
    root = Path(root)
    reports = root / cfg["paths"]["reports"]
    models = root / cfg["paths"]["models"]
    records, classes = load_manifest(root / cfg["paths"]["prepared"])
    by_path = {r.path: r for r in records}
    load = functools.partial(load_resized, max_pixels=cfg["data"].get("max_image_pixels", DEFAULT_MAX_PIXELS))
    test = [r for r in records if r.split == "test"]
    train = [r for r in records if r.split == "train"]
    reports.mkdir(parents=True, exist_ok=True)
    for pattern in OWN_PATTERNS:
        for old in reports.glob(pattern):
            old.unlink()
    out = Outcome(reports)
    dpi = int(v["dpi"])
    if v["threads"]:
        torch.set_num_threads(int(v["threads"]))
    nets = Nets(_device(v["device"]))
    techniques = [Technique(name, models / name) for name in v["techniques"]]
    trained = []
    for t in techniques:
        lacking = t.missing(CHECKPOINT, METRICS)
        if lacking:
            out.notes.append(f"{t.name}: skipped, not trained yet ({', '.join(lacking)} missing in {t.folder}); "
                             f"run its training stage (dvc repro)")
        else:
            trained.append(t)
    names = {t.name for t in trained}
    sections: dict[str, Section] = {}

    # ---- the comparison
    with _timed(out, "comparison"):
        out.rows = [row for row in comparison_rows(models) if row.get("technique") in names]
        table = comparison.comparison_table(out.rows, v["reference"])
        sec = sections["comparison"] = Section("comparison", "Comparison",
                                               "Test accuracy of each technique with its 95 % interval; red marks: "
                                               f"{v['reference_label']}.")
        if table:
            json_path, md_path = comparison.write_comparison(table, v["reference_label"], reports)
            fig = save(comparison.comparison_figure(table, v["reference_label"], chance=1 / len(classes)),
                       reports / "comparison.png", dpi)
            out.study_files += [fig, md_path, json_path]
            sec.figures.append(FigureEntry(fig, "Test accuracy per technique (bars), 95 % interval (error bars), the "
                                                "book's numbers (red marks), chance (dashed)."))
            sec.html = _comparison_html(table, v["reference_label"])
        sec.notes += out.notes

    # ---- training curves
    sec = sections["curves"] = Section("curves", "Training curves",
                                       "Training vs validation accuracy and loss per epoch: where they part, the net overfits.")
    with _timed(out, "curves"):
        for t in trained:
            if t.missing(HISTORY):
                sec.notes.append(f"{t.name}: no {HISTORY}")
                continue
            fig = curves.curves_figure(curves.read_history(t.file(HISTORY)), t.name, float(v["curves"]["smoothing"]))
            path = out.add(t.name, save(fig, reports / f"curves_{t.name}.png", dpi))
            sec.figures.append(FigureEntry(path, f"{t.name}: accuracy and loss per epoch."))

    # ---- Grad-CAM
    sec = sections["gradcam"] = Section("gradcam", "Class activation heatmaps (Grad-CAM)",
                                        "Where each network looks: Grad-CAM of the predicted class on its last conv "
                                        "feature map, for correctly and wrongly classified test images "
                                        "(most confident first). Red titles: wrong predictions.")
    per_group = int(v["gradcam"]["per_group"])
    with _timed(out, "gradcam"):
        for t in trained:
            if t.missing(PREDICTIONS):
                sec.notes.append(f"{t.name}: no {PREDICTIONS}")
                continue
            rows = mistakes.read_predictions(t.file(PREDICTIONS))
            unknown = [r.path for r in rows if r.path not in by_path]
            if unknown:
                sec.notes.append(f"{t.name}: {len(unknown)} test predictions name images not in the manifest "
                                 f"(e.g. {unknown[0]}): its model is older than the split; retrain it")
                continue
            chosen = {"correct": _balanced([r for r in rows if r.correct], per_group, classes),
                      "wrong": mistakes.most_confident_mistakes(rows, per_group)}
            net, spec = nets.get(t)
            size = spec["image_size"]
            flat = [r for group in chosen.values() for r in group]
            images = np.stack([load(by_path[r.path].file, size) for r in flat]) if flat else np.zeros((0,))
            layer_name, layer = cam_layer(net)
            explained = gradcam.explain(net, layer, images, _inputs(images, spec, nets.device) if flat else None,
                                        [by_path[r.path].target for r in flat], [r.path for r in flat])
            groups, k = {}, 0
            for group, items in chosen.items():
                groups[group] = explained[k:k + len(items)]
                k += len(items)
            fig = gradcam.gradcam_figure(groups, spec["classes"], f"Grad-CAM, {t.name} (layer {layer_name})",
                                         per_group, float(v["gradcam"]["image_weight"]))
            path = out.add(t.name, save(fig, reports / f"gradcam_{t.name}.png", dpi))
            sec.figures.append(FigureEntry(path, f"{t.name}: heatmaps of the predicted class on {layer_name}; "
                                                 "title: predicted class and probability, true class."))

    # ---- activations
    sec = sections["activations"] = Section("activations", "Intermediate activations",
                                            "Every channel of the scratch convnet's conv and pool layers, and of the "
                                            "first, middle and last stage of the pretrained base, for one test image. "
                                            "Each channel is standardised for display; grey tiles: channels that stay "
                                            "constant (blank) on this image.")
    test_record = _pick(test, v["test_image"], "test_image")
    with _timed(out, "activations"):
        for t in _chosen(v["activations"]["techniques"], names, sec, "activations"):
            net, spec = nets.get(next(x for x in trained if x.name == t))
            image = load(test_record.file, spec["image_size"])
            layers = activation_layers(net)
            acts = activations.layer_activations(net, _inputs(image[None], spec, nets.device), layers,
                                                 v["activations"]["max_channels"])
            fig = activations.activation_figure(image, acts, f"Activations of {t} for test image {test_record.path} "
                                                             f"({test_record.label})", int(v["activations"]["columns"]))
            path = out.add(t, save(fig, reports / f"activations_{t}.png", dpi))
            sec.figures.append(FigureEntry(path, f"{t}: layers {', '.join(a.name for a in acts)}."))

    # ---- filter patterns
    f = v["filters"]
    sec = sections["filters"] = Section("filters", "Filter patterns",
                                        f"The input that maximises each filter's mean activation: {f['steps']} steps of "
                                        f"normalised gradient ascent (step {f['step_size']} grey levels) from a grey "
                                        "image with noise. Panel titles: mean activation before -> after.")
    with _timed(out, "filters"):
        for t in _chosen(f["techniques"], names, sec, "filters"):
            net, spec = nets.get(next(x for x in trained if x.name == t))
            option = "filters.scratch_layers" if spec["kind"] == "scratch" else "filters.transfer_layers"
            chosen_layers = filter_layers(net, f[option.split(".")[1]], f"visualize.{option}")
            size = int(f["image_size"] or spec["image_size"])
            patterns = {}
            for name, module in chosen_layers:
                indices = filters.pick_filters(filters.layer_channels(net, module, size), int(f["per_layer"]))
                patterns[name] = filters.filter_patterns(
                    net, (name, module), indices, image_size=size, mean=spec["mean"], std=spec["std"],
                    steps=int(f["steps"]), step_size=float(f["step_size"]), noise=float(f["noise"]), seed=int(f["seed"]))
            fig = filters.filters_figure(patterns, f"Filter patterns of {t}", int(f["columns"]))
            path = out.add(t, save(fig, reports / f"filters_{t}.png", dpi))
            sec.figures.append(FigureEntry(path, f"{t}: {int(f['per_layer'])} filters of each of "
                                                 f"{', '.join(patterns)}."))

    # ---- augmentation preview
    a = v["augmentation_preview"]
    sec = sections["augmentation"] = Section("augmentation", "Augmentation preview",
                                             "One training image and random augmentations of it, drawn as training "
                                             "draws them (the `augmentation` config group).")
    with _timed(out, "augmentation"):
        record = _pick(train, a["image"], "augmentation_preview.image")
        size = int(cfg["techniques"][a["technique"]]["image_size"])
        aug_cfg = AffineConfig.from_mapping(cfg["augmentation"])
        image = load(record.file, size)
        copies = augmentation_preview.augmented_copies(image, aug_cfg, int(a["count"]), int(a["seed"]))
        fig = augmentation_preview.augmentation_figure(image, copies, aug_cfg, int(a["columns"]), record.path)
        path = save(fig, reports / "augmentation_preview.png", dpi)
        out.study_files.append(path)
        sec.figures.append(FigureEntry(path, f"{record.path} at {size} px and {len(copies)} augmentations."))

    # ---- mistakes
    m = v["mistakes"]
    sec = sections["mistakes"] = Section("mistakes", "Mistakes",
                                         "The test images a technique gets wrong, the most confident mistakes first: "
                                         "true class -> predicted class and its probability.")
    with _timed(out, "mistakes"):
        owner = _mistakes_technique(m["technique"], out.rows, names)
        t = next((x for x in trained if x.name == owner), None)
        if t is None:
            sec.notes.append(f"no mistakes gallery: {m['technique']!r} has not been trained")
        elif t.missing(PREDICTIONS):
            sec.notes.append(f"no mistakes gallery: {t.name} has no {PREDICTIONS}")
        else:
            rows = mistakes.read_predictions(t.file(PREDICTIONS))
            wrong = mistakes.most_confident_mistakes(rows, int(m["max_images"]))
            images = [load(by_path[r.path].file, int(m["image_size"])) for r in wrong if r.path in by_path]
            wrong = [r for r in wrong if r.path in by_path]
            fig = mistakes.mistakes_figure(images, wrong, t.name, sum(not r.correct for r in rows), len(rows),
                                           int(m["columns"]))
            path = out.add(t.name, save(fig, reports / f"mistakes_{t.name}.png", dpi))
            sec.figures.append(FigureEntry(path, f"{t.name}" + (" (the best technique)" if m["technique"] == "best"
                                                                 else "") + ": its wrong test predictions."))

    total = time.perf_counter() - started
    out.timings["total"] = total
    order = ["comparison", "curves", "gradcam", "activations", "filters", "augmentation", "mistakes"]
    footer = f"Stage time: {timing_summary(out)}. Device: {nets.device}. Written by pipelines/visualize.py (dvc repro visualize)."
    out.index = write_index(reports / INDEX, [sections[k] for k in order], f"smallvision study: {cfg['study']}",
                            f"Dataset {cfg['data']['name']}: {len(test)} test images, classes {', '.join(classes)}.",
                            footer)
    out.study_files.append(out.index)
    if tracker_factory is not None:
        _log_to_mlflow(tracker_factory, out)
    return out


def _chosen(wanted: list[str], trained: set[str], section: Section, option: str) -> list[str]:
    """The configured techniques that were trained; the others get a note."""
    missing = [t for t in wanted if t not in trained]
    if missing:
        section.notes.append(f"not shown (not trained): {', '.join(missing)} (visualize.{option}.techniques)")
    return [t for t in wanted if t in trained]


def _mistakes_technique(choice: str, rows: list[dict], trained: set[str]) -> str | None:
    if choice != "best":
        return choice
    scored = [r for r in rows if isinstance(r.get("test_accuracy"), (int, float)) and r.get("technique") in trained]
    return max(scored, key=lambda r: r["test_accuracy"])["technique"] if scored else None


def _comparison_html(table: list[dict], reference_label: str) -> str:
    def pct(x: Any) -> str:
        return f"{100 * x:.1f} %" if isinstance(x, (int, float)) else "—"

    rows = [[r["technique"], r.get("backbone") or "—", pct(r["test_accuracy"]),
             f"{pct(r.get('ci95_low'))} – {pct(r.get('ci95_high'))}", r.get("test_images") or "—", pct(r["reference"]),
             f"{r['wall_time_s']:.0f} s" if isinstance(r.get("wall_time_s"), (int, float)) else "—"] for r in table]
    return table_html(["technique", "backbone", "test accuracy", "95 % interval", "test images", reference_label,
                       "training time"], rows, numeric=frozenset({2, 3, 4, 5, 6}))


# ----------------------------------------------------------------------------------------------- MLflow


def _log_to_mlflow(tracker_factory: Callable[[], Any], out: Outcome) -> None:
    """The comparison and study-level files on the study run, each technique's figures on its child run.

    Never raises: MLflow is a copy of what reports/ already holds.
    """
    try:
        tracker = tracker_factory()
        if not tracker.enabled:
            return
        tracker.log_comparison(out.rows, [p for p in out.study_files if p.name != "comparison.json"])
        parent = tracker.parent_run_id
        if parent is None or not tracker.enabled:
            return
        tracker.log_metrics(parent, {"visualize_wall_time_s": out.timings["total"]})
        for technique, paths in out.per_technique.items():
            child = find_child_run(tracker.client, parent, technique)
            if child is None:
                log.warning("MLflow: no run of %s under the study run %s; its figures are only in %s",
                            technique, parent, out.reports)
                continue
            tracker.log_artifacts(child, paths, "figures")
    except Exception as err:  # noqa: BLE001 -- tracking must never fail the stage
        log.warning("MLflow logging of the figures failed (%s: %s); they are all in %s",
                    type(err).__name__, str(err).splitlines()[0] if str(err) else "", out.reports)


def find_child_run(client: Any, parent_run_id: str, technique: str) -> str | None:
    """The newest technique run under the study run `parent_run_id` (tags mlflow.parentRunId and technique)."""
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    experiment = client.get_run(parent_run_id).info.experiment_id
    if "'" in technique:
        return None  # cannot be quoted in a filter string; technique names are identifiers anyway
    found = client.search_runs([experiment], filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}' "
                                                           f"and tags.technique = '{technique}'",
                               order_by=["attributes.start_time DESC"], max_results=1)
    return found[0].info.run_id if found else None


def study_tracker(cfg: Mapping[str, Any], root: Path) -> Any:
    """The StudyTracker the training stages logged to, so the figures land on the same parent run."""
    from smallvision import tracking
    from smallvision.data.cache import manifest_digest

    digest = manifest_digest(Path(root) / cfg["paths"]["prepared"] / "manifest.csv")
    return tracking.study_tracker(cfg, Path(root), digest)


def timing_summary(out: Outcome) -> str:
    """One line: seconds per step and in total."""
    return ", ".join(f"{k} {s:.1f} s" for k, s in out.timings.items())

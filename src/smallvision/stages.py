"""The study's DVC stages, in one registry: each stage's entry script and command, the config it reads, its data
inputs and its outputs. dvc.yaml is generated from it (`python -m smallvision.stages > dvc.yaml`, run from the
project root; a test checks the committed file is what this writes), and each entry script prints the config its
stage reads from it.

A stage's `params` are the settings that change its outputs (DVC reruns it when one changes); `also_reads` the
ones it reads that cannot (time limits, worker counts): printed at its start, not DVC params. A training stage
reads its technique's settings, the backbone for a pretrained kind and the augmentation when it augments
(`training_reads`). The registry reads the config as plain containers: conf/ composed (for dvc.yaml, whose
interpolations stay unresolved) or an entry script's `Settings.model_dump()` (what it prints), so this module
imports neither torch nor the schema. The code a stage depends on is its entry script and every smallvision module
it imports, found by walking the imports (`smallvision.code_deps`), less the modules that cannot change its
outputs (`NO_EFFECT_ON_OUTPUTS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smallvision.audit import DUPLICATES, LABEL_ISSUES, OFF_TASK, SUMMARY
from smallvision.code_deps import code_deps
from smallvision.data.manifest import MANIFEST, REPORT
from smallvision.runs import ACCURACY, CHECKPOINT, CONFUSION, HISTORY, METRICS, PREDICTIONS

FROM_SCRATCH = ("scratch", "modern")  # the kinds without a pretrained base (smallvision.networks.FROM_SCRATCH)
HYDRA_VARS = "--config-dir . --config-name params hydra.output_subdir=null hydra.run.dir=."
PRESET_NOTE = "the preset's name: metrics.json records it and the comparison checks it"
PACKAGE = "src/smallvision"

# Code the stages import that cannot change their DVC outputs: listed as deps, an edit to it would rerun the
# 100-minute training stages for nothing. The import walk does not follow their own imports either.
NO_EFFECT_ON_OUTPUTS = {
    f"{PACKAGE}/stages.py": "what a stage reads: it reaches DVC as dvc.yaml's params, which are generated from it",
    f"{PACKAGE}/tracking": "MLflow logging only",
    f"{PACKAGE}/sweeps.py": "a Hydra sweep's folder: the head its fine-tune jobs start from",
}


# The project's own files and folders (from its root), which no stage's output may be, hold or lie inside.
PROJECT_FILES = (
    *("conf", "src", "pipelines", "tests", "docs", "benchmarks", ".git", ".dvc", ".dvcignore", ".gitignore"),
    *("dvc.yaml", "dvc.lock", "params.yaml", "pyproject.toml", "README.md"),
)


@dataclass(frozen=True)
class Out:
    """One output of a stage: DVC caches it unless `cache` is False; `persist` keeps it between runs."""

    path: str
    cache: bool = True
    persist: bool = False


@dataclass(frozen=True)
class Stage:
    """One DVC stage. `script` is pipelines/<script>.py; `technique` is set for the training stages, whose params
    come from that technique's settings. `no_effect` is code it imports that cannot change its outputs, besides
    `NO_EFFECT_ON_OUTPUTS`. `comment` and `notes` are the comments dvc.yaml shows: on the stage, and on a section
    (deps, params, outs, metrics, plots) or an item by its text. `replaces` is the key of cfg.paths naming the
    folder the stage replaces wholesale, if any (`output_folder`)."""

    name: str
    script: str
    params: tuple[str, ...] = ()
    also_reads: tuple[str, ...] = ()
    deps: tuple[str, ...] = ()
    outs: tuple[Out, ...] = ()
    metrics: tuple[Out, ...] = ()
    plots: tuple[Out, ...] = ()
    technique: str | None = None
    comment: str | None = None
    no_effect: Mapping[str, str] = field(default_factory=dict)
    notes: Mapping[str, str] = field(default_factory=dict)
    replaces: str | None = None

    @property
    def folder(self) -> str:
        """A training stage's output folder (where its checkpoint is)."""
        return str(Path(self.outs[0].path).parent)

    @property
    def entry_script(self) -> str:
        return f"pipelines/{self.script}.py"

    @property
    def cmd(self) -> str:
        extra = f" technique={self.technique}" if self.technique else ""
        return f"python {self.entry_script} ${{hydra}}{extra}"

    def code(self, root: Path) -> list[str]:
        """The code this stage runs (its dvc.yaml code deps): the entry script and the smallvision modules it
        imports, less those that cannot change its outputs."""
        return code_deps(root, self.entry_script, (*NO_EFFECT_ON_OUTPUTS, *self.no_effect))

    def dvc_params(self, cfg: Mapping[str, Any]) -> list[str]:
        """The settings whose change reruns this stage (for a training stage, from `cfg`'s technique settings)."""
        if self.technique:
            return training_reads({**cfg, "technique": self.technique})
        return list(self.params)

    def reads(self, cfg: Mapping[str, Any]) -> list[str]:
        """Everything this stage's entry script reads from the config: what it prints at its start."""
        return [*self.dvc_params(cfg), *self.also_reads]


def training_reads(cfg: Mapping[str, Any]) -> list[str]:
    """The config a training job of cfg["technique"] reads (its DVC stage's params): its technique, the backbone
    for a pretrained one, the augmentation group when it augments with it (the modern technique has its own
    transforms, in its settings), the trainer, the seed and the study (the preset's name, which metrics.json
    records and the comparison checks)."""
    name = cfg["technique"]
    tech = cfg["techniques"][name]
    keys = [f"techniques.{name}"]
    if tech["kind"] not in FROM_SCRATCH:
        keys.append("backbone")
    if tech.get("augment"):
        keys.append("augmentation")
    return [*keys, "trainer", "seed", "preset"]


_IMAGE_LIMITS = ("data.max_image_pixels", "data.max_image_bytes")
EXCLUSION_LIST = "exclude.txt"  # the project's exclusion list (data.exclude), kept in git
FEATURES_FROM = "feature_extract"  # the technique whose cached base features the audit reads
TRAINING = {  # stage -> technique, in the study's order
    "train-baseline": "baseline",
    "augment": "augment",
    "train-modern": "modern",
    "feature-extract": "feature_extract",
    "fine-tune": "fine_tune",
}


def registry(paths: Mapping[str, str]) -> tuple[Stage, ...]:
    """The stages, in the order they run, their files where `paths` (cfg.paths) puts them."""
    split = (f"{paths['prepared']}/{MANIFEST}", f"{paths['prepared']}/{REPORT}")  # the manifest and split report
    training = _training_stages(paths, split)
    audit_files = tuple(f"{paths['audit']}/{name}" for name in (LABEL_ISSUES, DUPLICATES, OFF_TASK, SUMMARY))
    return (
        _download(paths),
        _split(paths, split),
        *training,
        _audit(split, audit_files),
        _visualize(paths, split, training, audit_files),
        _export(paths, split),
    )


def _download(paths: Mapping[str, str]) -> Stage:
    return Stage(
        "download",
        "download",
        params=("data.name", "data.source", "data.sha256", "data.synthetic"),
        also_reads=(
            "data.size",
            "data.connect_timeout_s",
            "data.download_retries",
            "data.max_extract_bytes",
            "data.max_tar_header_bytes",
            "data.max_download_bytes",
            "data.min_download_bytes_per_s",
            "data.download_rate_window_s",
        ),
        outs=(Out(paths["raw"], cache=False),),
        replaces="raw",
    )


def _split(paths: Mapping[str, str], split: Sequence[str]) -> Stage:
    manifest, split_report = split
    return Stage(
        "split",
        "split",
        params=("data.split", "data.classes", "data.exclude", *_IMAGE_LIMITS, "seed"),
        also_reads=("data.workers",),
        deps=(paths["raw"], EXCLUSION_LIST),
        notes={EXCLUSION_LIST: "the project's reviewed exclusion list, read when data.exclude names it"},
        outs=(Out(manifest),),
        metrics=(Out(split_report, cache=False),),
        replaces="prepared",
    )


def _training_stages(paths: Mapping[str, str], split: Sequence[str]) -> tuple[Stage, ...]:
    """The training stages (`TRAINING`); feature-extract also keeps the feature cache, fine-tune starts from its
    head."""
    models = paths["models"]
    features_note = "the feature cache, keyed by backbone, weights, image size, pooling and manifest: kept between runs"
    head = f"{models}/feature_extract/{CHECKPOINT}"
    extra: dict[str, dict[str, Any]] = {
        "feature-extract": {
            "outs": [Out(paths["features"], cache=False, persist=True)],
            "notes": {paths["features"]: features_note},
        },
        "fine-tune": {"deps": [head], "notes": {head: "the head it starts from"}},
    }
    return tuple(
        _training(name, technique, f"{models}/{technique}", split, **extra.get(name, {}))
        for name, technique in TRAINING.items()
    )


def _audit(split: Sequence[str], audit_files: Sequence[str]) -> Stage:
    return Stage(
        "audit",
        "audit",
        params=(
            "audit",
            "backbone",
            f"techniques.{FEATURES_FROM}.image_size",
            f"techniques.{FEATURES_FROM}.head.pool",
            "trainer.precision",
            *_IMAGE_LIMITS,
            "seed",
        ),
        also_reads=("data.workers", f"techniques.{FEATURES_FROM}.extract_batch_size"),
        deps=tuple(split),
        outs=tuple(Out(path, cache=False) for path in audit_files[:-1]),
        metrics=(Out(audit_files[-1], cache=False),),
        comment="probable label errors, near-duplicates (leakage into test) and off-task images, on "
        "feature-extract's cached features",
        notes={
            "seed": "the folds of the out-of-fold probabilities",
            f"techniques.{FEATURES_FROM}.image_size": "with the backbone, pooling and precision: the feature "
            "cache file it shares with feature-extract",
        },
    )


def _visualize(
    paths: Mapping[str, str], split: Sequence[str], training: Sequence[Stage], audit_files: Sequence[str]
) -> Stage:
    return Stage(
        "visualize",
        "visualize",
        params=("visualize", "augmentation", "preset", "seed"),
        deps=(
            *split,
            *(f"{s.folder}/{name}" for s in training for name in TRAINING_FILES),
            *audit_files,
        ),
        outs=(Out(paths["reports"], cache=False),),
        metrics=(Out(paths["comparison"], cache=False),),
        notes={
            "preset": "the comparison keeps the runs of this preset, seed and manifest only",
            "metrics": "the comparison with its paired tests: the numbers the study's MLflow run logs",
            audit_files[0]: "the data audit's findings: the report's section, flagged test mistakes",
        },
    )


def _export(paths: Mapping[str, str], split: Sequence[str]) -> Stage:
    manifest = split[0]
    exported = f"{paths['models']}/${{export.technique}}/{CHECKPOINT}"  # params.yaml's export.technique
    return Stage(
        "export",
        "export",
        params=("export", *_IMAGE_LIMITS),
        deps=(*split, exported),
        outs=(Out(paths["export"]),),
        replaces="export",
        comment="one trained network (export.technique) as ONNX and TorchScript, with preprocessing.json beside them",
        notes={
            manifest: "the parity check runs on test images",
            exported: "params.yaml's export.technique",
            "data.max_image_pixels": "the parity check reads test images under these limits",
        },
    )


TRAINING_FILES = (CHECKPOINT, METRICS, HISTORY, PREDICTIONS, CONFUSION)  # what visualize reads of each technique


def _training(
    name: str,
    technique: str,
    folder: str,
    split: Sequence[str],
    deps: Sequence[str] = (),
    outs: Sequence[Out] = (),
    notes: Mapping[str, str] | None = None,
) -> Stage:
    return Stage(
        name,
        "train",
        technique=technique,
        deps=(*split, *deps),
        # history.csv and test_predictions.csv are drawn by the top-level plots (`_plots`) only: as a stage's
        # plots DVC would also draw each with its default template (a value against its row index)
        outs=(
            Out(f"{folder}/{CHECKPOINT}"),
            Out(f"{folder}/{CONFUSION}", cache=False),
            Out(f"{folder}/{HISTORY}", cache=False),
            Out(f"{folder}/{PREDICTIONS}", cache=False),
            *outs,
        ),
        metrics=(Out(f"{folder}/{METRICS}", cache=False), Out(f"{folder}/{ACCURACY}", cache=False)),
        no_effect={f"{PACKAGE}/evidence.py": "the paired tests the job logs on the study's MLflow run"},
        notes={"preset": PRESET_NOTE, **(notes or {})},
    )


def stage(name: str, cfg: Mapping[str, Any]) -> Stage:
    """The stage `name` of the project `cfg` configures (KeyError naming the stages when there is none)."""
    stages = registry(cfg["paths"])
    for candidate in stages:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no stage {name!r}; the stages: {', '.join(s.name for s in stages)}")


def output_folder(name: str, cfg: Mapping[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """The setting (paths.x) of the folder stage `name` replaces wholesale, and what that folder must not overlap:
    (what, path relative to the project root) for every other stage's outputs and folder, the caches and the
    project's own files."""
    paths = cfg["paths"]
    key = stage(name, cfg).replaces
    if key is None:
        raise KeyError(f"the {name} stage replaces no folder")
    claimed = [("the project's own", p) for p in PROJECT_FILES]
    claimed += [(f"paths.{k}", paths[k]) for k in ("cache", "features")]
    for other in registry(paths):
        if other.name != name:
            claimed += [(f"the {other.name} stage's", o.path) for o in (*other.outs, *other.metrics, *other.plots)]
            claimed += [(f"paths.{other.replaces}", paths[other.replaces])] if other.replaces else []
    return f"paths.{key}", claimed


def reads(name: str, cfg: Mapping[str, Any]) -> list[str]:
    """What the entry script of stage `name` reads from `cfg`, printed at its start (`entrypoints.show_config`)."""
    return stage(name, cfg).reads(cfg)


# --------------------------------------------------------------------------------------------- dvc.yaml

HEADER = """\
# The study as DVC stages. Parameters come from params.yaml, which `dvc exp run` composes from conf/
# (Hydra composition, see .dvc/config), so `dvc exp run -S techniques.augment.epochs=50` and
# `python pipelines/train.py techniques.augment.epochs=50` change the same value.
# Each stage lists only the parameters it reads and the code it runs (its entry script and the smallvision modules
# it imports), so editing one technique, or one module, reruns only what it feeds.
# Generated from src/smallvision/stages.py: edit that, then `python -m smallvision.stages > dvc.yaml`.
"""


def _line(indent: int, text: str, note: str | None) -> str:
    return " " * indent + text + (f"  # {note}" if note else "")


def _outs(items: Iterable[Out], notes: Mapping[str, str]) -> list[str]:
    lines = []
    for out in items:
        if out.cache and not out.persist:
            lines.append(_line(6, f"- {out.path}", notes.get(out.path)))
            continue
        if out.path in notes:
            lines.append(_line(6, f"# {notes[out.path]}", None))
        lines.append(_line(6, f"- {out.path}:", None))
        if out.persist:
            lines.append(_line(10, "persist: true", None))
        if not out.cache:
            lines.append(_line(10, "cache: false", None))
    return lines


def _stage_lines(spec: Stage, cfg: Mapping[str, Any], root: Path) -> list[str]:
    notes = spec.notes
    lines = [_line(2, f"{spec.name}:", spec.comment), _line(4, f"cmd: {spec.cmd}", None)]
    lines.append(_line(4, "deps:", notes.get("deps")))
    lines += [_line(6, f"- {dep}", notes.get(dep)) for dep in [*spec.code(root), *spec.deps]]
    lines.append(_line(4, "params:", notes.get("params")))
    lines += [_line(6, f"- {key}", notes.get(key)) for key in spec.dvc_params(cfg)]
    for section in ("outs", "metrics", "plots"):
        items = getattr(spec, section)
        if items:
            lines.append(_line(4, f"{section}:", notes.get(section)))
            lines += _outs(items, notes)
    return lines


def _plots(training: Sequence[Stage]) -> list[str]:
    """The top-level plots, the only ones `dvc plots show` draws: the curves of every training stage, and each one's
    test confusion matrix, with titled axes."""
    lines = ["plots:"]
    for key, title, columns, label in (
        ("accuracy", "Training and validation accuracy", "[train_acc, val_acc]", "accuracy"),
        ("loss", "Training and validation loss", "[train_loss, val_loss]", "cross-entropy loss"),
    ):
        lines += [f"  - {key}:", f"      title: {title}", "      x: epoch", "      x_label: epoch"]
        lines += [f"      y_label: {label}", "      y:"]
        lines += [f"        {s.folder}/{HISTORY}: {columns}" for s in training]
    for s in training:
        lines += [
            f"  - confusion_{s.technique}:",
            f"      title: Test confusion matrix ({s.technique})",
            "      template: confusion",
            "      x: actual",
            "      x_label: actual class",
            "      y_label: predicted class",
            "      y:",
            f"        {s.folder}/{PREDICTIONS}: predicted",
        ]
    return lines


def dvc_yaml(cfg: Mapping[str, Any], root: Path) -> str:
    """dvc.yaml for the project at `root` (its pipelines/ and src/) from `cfg` (conf/ composed): the stages'
    files where cfg.paths puts them, the training stages' params from their technique settings."""
    stages = registry(cfg["paths"])
    lines = HEADER.splitlines() + ["vars:", f"  - hydra: {HYDRA_VARS}", "", "stages:"]
    for number, spec in enumerate(stages):
        lines += ([""] if number else []) + _stage_lines(spec, cfg, root)
    return "\n".join([*lines, "", *_plots([s for s in stages if s.technique])]) + "\n"


def composed_conf(conf: Path) -> dict:
    """conf/ composed as `dvc exp run` composes it (no overrides)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(conf.resolve()), version_base="1.3"):
        return OmegaConf.to_container(compose("config"), resolve=False)  # type: ignore[return-value]


if __name__ == "__main__":  # python -m smallvision.stages > dvc.yaml, from the project root
    print(dvc_yaml(composed_conf(Path("conf")), Path.cwd()), end="")

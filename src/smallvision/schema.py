"""The typed schema of the whole configuration: one pydantic model per section of what conf/config.yaml composes
(every option of every group; the techniques: `smallvision.schema_techniques`; the visualize stage's sections:
`smallvision.schema_visualize`), with every setting's type, bounds and the rules between settings. Each entry
script builds `Settings` once (`smallvision.entrypoints.load_settings`) and hands typed sections to the library; a
bad value anywhere stops any stage before work, as one line naming the key, the value and what is allowed.

Why pydantic models rather than Hydra structured configs: bounds and cross-field rules live on the fields, types
are strict (a bool is not an int, "abc" is not a float), and conf/ stays plain YAML that DVC's own Hydra
composition (params.yaml, `dvc exp run -S`) composes without importing this code.

No setting has a default here: every value comes from conf/ (null where conf/ allows it), and a misspelt or
missing key is an error. The rules a field is checked by and the words of its error: `smallvision.schema_rules`;
the one line a failure becomes: `message`.
"""

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from smallvision.data.images import ImageLimits
from smallvision.errors import ConfigError
from smallvision.schema_rules import (
    AMOUNT,
    BLOCKS,
    BYTES,
    COUNT,
    DEVICES,
    FLAG,
    IMAGE_SIZE,
    MAX_BYTES,
    SECONDS,
    SEED,
    SETTING_ERROR,
    TEST_AMOUNT,
    Section,
    choice,
    explained,
    numbers,
    optional,
    real,
    refuse,
    refuse_line,
    whole,
)
from smallvision.schema_techniques import TECHNIQUE_KINDS, AnyTechnique, Augmentation, TechniqueSettings
from smallvision.schema_visualize import Visualize

PILLOW_MAX_PIXELS = 2 * 89_478_485  # Pillow refuses larger images while opening them, whatever the setting
REST = "rest"  # data.split.test=rest: every valid image train and val leave over
M = TypeVar("M", bound=BaseModel)


# --------------------------------------------------------------------------- data


class Synthetic(Section):
    classes: list[str]
    per_class: COUNT
    image_size: whole(16, 4096, "px")
    seed: SEED

    @model_validator(mode="after")
    def _shapes(self) -> "Synthetic":
        from smallvision.data.synthetic import SHAPES

        unknown = [c for c in self.classes if c not in SHAPES]
        if unknown or len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise refuse("classes", self.classes, f"must be two or more distinct shapes from {sorted(SHAPES)}")
        return self


class Split(Section):
    """Per class: all counts (integers >= 0) or all fractions (floats in [0, 1), sum <= 1); train > 0; test may be
    `rest` (every valid image of a class that train and val do not take)."""

    train: AMOUNT
    val: AMOUNT
    test: TEST_AMOUNT

    def amounts(self) -> dict[str, int | float | str]:
        return {"train": self.train, "val": self.val, "test": self.test}

    @model_validator(mode="after")
    def _one_kind(self) -> "Split":
        if not self.train:
            raise refuse("train", self.train, "must be > 0")
        return self

    def check_used(self, used: Sequence[str]) -> None:
        """Refuse (ConfigError) amounts of the splits `used` that mix counts and fractions or whose fractions sum
        past 1. Checked by the split stage once it knows the layout: a pre-split tree uses only `val` (carved out of
        train/) or none, and the unused defaults must not refuse a value the layout does use."""
        amounts = {name: value for name, value in self.amounts().items() if name in used}
        fractions = [n for n, v in amounts.items() if isinstance(v, float) and v > 0]
        counts = [n for n, v in amounts.items() if isinstance(v, int) and v > 0]
        if fractions and counts:
            raise ConfigError(
                f"data.split mixes counts ({', '.join(counts)}) and fractions ({', '.join(fractions)}): {amounts}; use "
                "all counts (e.g. 1000/500/500) or all fractions (e.g. 0.6/0.2/0.2)"
            )
        total = sum(v for v in amounts.values() if not isinstance(v, str))
        if fractions and total > 1 + 1e-9:
            raise ConfigError(f"data.split fractions sum to {total:g}, more than 1: {amounts}")


class Data(Section):
    sha256: Annotated[
        Annotated[str, Field(pattern=r"^\s*[0-9a-fA-F]{64}\s*$")] | None, *explained("must be 64 hex digits, or null")
    ]
    size: optional(whole(1, MAX_BYTES, "bytes"), "not checked")
    connect_timeout_s: SECONDS
    download_retries: whole(0, 100)
    max_extract_bytes: BYTES
    max_tar_header_bytes: BYTES
    max_download_bytes: BYTES
    min_download_bytes_per_s: real(0, 1e9, low_open=True, why="bytes per second")
    download_rate_window_s: SECONDS
    classes: list[str] | None
    synthetic: Synthetic | None
    workers: optional(whole(1, 1024), "all cores")
    max_image_pixels: optional(
        whole(1, PILLOW_MAX_PIXELS, "Pillow refuses larger images anyway"), "only Pillow's own limit"
    )
    max_image_bytes: optional(BYTES, "no limit")
    exclude: str | None
    name: str
    source: str
    split: Split

    @model_validator(mode="after")
    def _classes(self) -> "Data":
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            raise refuse("classes", self.classes, "lists a class twice")
        if self.source.strip() == "synthetic" and self.synthetic is None:
            raise refuse_line("synthetic", "is not set: data.source=synthetic needs it (data=synthetic sets both)")
        return self

    @property
    def image_limits(self) -> ImageLimits:
        """The largest image a stage reads (max_image_pixels, max_image_bytes)."""
        return ImageLimits(self.max_image_pixels, self.max_image_bytes)


# --------------------------------------------------------------------------- backbone and augmentation


class Weights(Section):
    source: choice("package", "file", "hub", "none")
    package: str | None
    file: str | None
    match: choice("name", "order", "lukemelas")
    url: str | None
    hub_timeout_s: SECONDS

    @model_validator(mode="after")
    def _needs(self) -> "Weights":
        if self.source == "package" and not self.package:
            raise refuse_line(
                "package",
                "is not set: backbone.weights.source=package needs the import name of an installed package that "
                "ships the weights file",
            )
        if self.source == "file" and not self.file:
            raise refuse_line("file", "is not set: backbone.weights.source=file needs the path of a state dict")
        return self


class Backbone(Section):
    name: str
    timm_name: Annotated[
        str, Field(min_length=1), *explained("must be a timm model name such as 'tf_efficientnet_lite0'")
    ]
    image_size: IMAGE_SIZE
    mean: optional(numbers(3, real(0, 1)), "timm's pretrained config")
    std: optional(numbers(3, real(0, 1, low_open=True)), "timm's pretrained config")
    resize: choice("crop", "squash")
    crop_pct: optional(
        real(0, 1, low_open=True, why="the centre crop's share of the resized shorter side"), "timm's pretrained config"
    )
    interpolation: choice("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos") | None
    weights: Weights
    head_pool: choice("avg", "flatten")
    unfreeze_blocks: BLOCKS


# --------------------------------------------------------------------------- trainer and logger


class Trainer(Section):
    accelerator: str
    devices: DEVICES
    num_nodes: whole(1, 100_000)
    strategy: str
    precision: str | Literal[16, 32, 64]  # auto, or Lightning's (32-true, bf16-mixed, ...): Lightning checks them
    channels_last: FLAG
    compile: FLAG
    fp32_depthwise_grads: FLAG
    num_workers: whole(0, 1024)
    deterministic: FLAG
    log_every_n_steps: whole(1, 10**9)
    progress: FLAG


class Logger(Section):
    enabled: FLAG
    tracking_uri: str | None
    experiment_name: str
    log_models: FLAG
    registered_model: str | None
    ui_url: str | None
    http_timeout_s: SECONDS
    http_max_retries: whole(0, 100)


# --------------------------------------------------------------------------- the other stages


# --------------------------------------------------------------------------- the other stages


class Folders(Section):
    raw: str
    prepared: str
    cache: str
    features: str
    models: str
    reports: str
    export: str
    comparison: str
    audit: str


class LrFind(Section):
    min_lr: real(0, 10, low_open=True, why="below lr_find.max_lr")
    max_lr: real(0, 10, low_open=True)
    num_training: whole(
        12, 10_000, "the suggestion skips the first 10 points and needs 2 more; a range test needs a few hundred"
    )

    @model_validator(mode="after")
    def _order(self) -> "LrFind":
        if self.min_lr >= self.max_lr:
            raise refuse("min_lr", self.min_lr, f"must be below lr_find.max_lr={self.max_lr:g}")
        return self


class Predict(Section):
    model: str | None
    input: str | None
    output: str | None
    batch_size: COUNT


class Export(Section):
    technique: str
    opset: whole(18, 100, "PyTorch's torch.export-based exporter writes opset 18 and newer")
    check_images: whole(2, 10_000, "the parity check's batch")
    tolerance: real(0, 1, low_open=True, why="the largest difference from PyTorch's outputs")


class Audit(Section):
    folds: whole(2, 100, "each class needs at least this many images")
    regularisation: real(0, 1e6, low_open=True, why="the logistic regression's C: larger fits the features closer")
    max_iter: whole(1, 100_000)
    duplicate_threshold: real(0, 1, low_open=True, why="cosine similarity of the features")
    neighbours: whole(1, 1000)
    off_task_share: real(0, 1, why="of the images")


class Settings(Section):
    """The whole resolved configuration (conf/config.yaml composed)."""

    data: Data
    backbone: Backbone
    augmentation: Augmentation
    trainer: Trainer
    logger: Logger
    visualize: Visualize
    techniques: dict[str, TechniqueSettings]
    technique: str
    seed: SEED
    preset: str
    paths: Folders
    lr_find: LrFind
    predict: Predict
    export: Export
    audit: Audit

    @model_validator(mode="after")
    def _names(self) -> "Settings":
        known = list(self.techniques)
        if self.technique not in known:
            raise refuse("technique", self.technique, f"is unknown; allowed: {', '.join(known)}")
        if self.export.technique not in known:
            raise refuse("export.technique", self.export.technique, f"is unknown; allowed: {', '.join(known)}")
        wrong = self.visualize.unknown_techniques(known)
        if wrong is not None:
            ctx = dict(wrong.context or {})
            raise PydanticCustomError(SETTING_ERROR, "{text}", {**ctx, "key": f"visualize.{ctx['key']}"})
        return self

    @property
    def selected(self) -> AnyTechnique:
        """The technique `technique` picks (the one a training job trains)."""
        return self.techniques[self.technique]


# --------------------------------------------------------------------------- validation and its one-line errors


def validate(model: type[M], plain: Mapping[str, Any], prefix: str = "") -> M:
    """`plain` (resolved containers) as `model`; the first mistake is a ConfigError naming its dotted key."""
    try:
        return model.model_validate(plain)
    except ValidationError as err:
        raise ConfigError(message(err.errors()[0], prefix)) from None


def _key(loc: tuple, prefix: str) -> str:
    parts = [str(p) for p in loc]
    if len(parts) >= 3 and parts[0] == "techniques" and parts[2] in TECHNIQUE_KINDS:
        del parts[2]  # the discriminated union's tag
    return ".".join([p for p in (prefix.rstrip("."),) if p] + parts)


def message(error: Mapping[str, Any], prefix: str = "") -> str:
    """One pydantic error as the line after `smallvision: error: `: `<key>=<value> must be ...`."""
    key, kind, ctx, value = _key(error["loc"], prefix), error["type"], error.get("ctx") or {}, error.get("input")
    if kind == SETTING_ERROR:
        if "key" in ctx:
            key = ".".join(p for p in (key, ctx["key"]) if p)
            if "value" not in ctx:
                return f"{key} {ctx['text']}"
            value = ctx["value"]
        return f"{key}={value!r} {ctx['text']}"
    if kind == "missing":
        return f"{key} is not set (every setting comes from conf/)"
    if kind == "extra_forbidden":
        return f"{key}={value!r} is not a setting (a misspelt key?)"
    if kind in ("model_type", "model_attributes_type", "dict_type"):  # e.g. export=abc
        return f"{key}={value!r} must be a section of settings (key: value pairs, as in conf/), not a single value"
    if kind == "union_tag_invalid":
        return f"{key}.kind={ctx.get('tag')!r} is unknown; allowed: {', '.join(TECHNIQUE_KINDS)}"
    if kind == "union_tag_not_found":
        return f"{key}.kind is not set; allowed: {', '.join(TECHNIQUE_KINDS)}"
    return f"{key}={value!r} {str(error['msg']).replace('Input should be', 'must be')}"

"""The typed settings of the techniques (`techniques:` in conf/, `conf/techniques/*.yaml`): one model per kind
(the small convnet from scratch, the modern convnet, feature extraction, fine-tuning), told apart by `kind`, with
what they share (optimizer, learning-rate schedule, head, the Keras augmentation) and the rules between their
settings. Part of the whole configuration's schema (`smallvision.schema.Settings.techniques`), with the same kinds
of setting and rules (`smallvision.schema_rules`)."""

import math
from typing import Annotated, Literal

from pydantic import Field, model_validator

from smallvision.models.convnet_sizes import MIN_IMAGE_SIZE
from smallvision.schema_rules import (
    BIG_COUNT,
    BLOCKS,
    COUNT,
    FLAG,
    IMAGE_SIZE,
    Section,
    choice,
    explained,
    optional,
    real,
    refuse,
    whole,
)


class Augmentation(Section):
    """Keras ImageDataGenerator's geometric arguments (`smallvision.data.augmentation.AffineConfig`)."""

    rotation_range: real(0, 180, why="degrees")
    width_shift_range: real(0, 1, why="of the width")
    height_shift_range: real(0, 1, why="of the height")
    shear_range: real(0, math.pi / 2, high_open=True, why="radians")
    zoom_range: real(0, 1, high_open=True, why="zoom factors 1 - z to 1 + z stay positive")
    horizontal_flip: FLAG
    fill_mode: choice("nearest", "constant", "reflect")
    cval: real(0, 255, why="a grey level")
    interpolation: choice("bilinear", "nearest")


class Optimizer(Section):
    name: choice("rmsprop", "adam", "adamw", "sgd")
    lr: real(0, 10, low_open=True)
    alpha: real(0, 1, high_open=True)
    eps: real(0, 1, low_open=True)
    momentum: real(0, 1, high_open=True)
    weight_decay: real(0, 1)
    layer_decay: real(0, 1, low_open=True, why="1: the same rate for every layer")


class LrSchedule(Section):
    name: choice("constant", "cosine")
    warmup_epochs: real(0, BIG_COUNT, why="epochs, below the technique's epochs")


class Head(Section):
    units: COUNT
    dropout: real(0, 1, high_open=True)
    pool: choice("avg", "flatten")


class Technique(Section):
    """What every kind of technique shares: its rules and properties (each kind lists its fields in conf/'s order,
    so the resolved config keeps its order)."""

    @model_validator(mode="after")
    def _warmup(self) -> "Technique":
        warmup = self.lr_schedule.warmup_epochs
        if warmup >= self.epochs:
            raise refuse("lr_schedule.warmup_epochs", warmup, f"must be below the epochs ({self.epochs})")
        return self

    @property
    def cached(self) -> bool:
        """Feature extraction in cached mode: the base runs once over every image and the head trains on its
        features."""
        return False


LABEL_SMOOTHING = real(0, 1, high_open=True, why="0: hard targets; e: targets e/2 and 1 - e/2 for two classes")


class Scratch(Technique):
    """The small convnet trained from scratch (baseline, augment)."""

    name: str
    kind: Literal["scratch"]
    image_size: IMAGE_SIZE
    dropout: real(0, 1, high_open=True)
    augment: FLAG
    batch_size: COUNT
    eval_batch_size: COUNT
    epochs: COUNT
    optimizer: Optimizer
    lr_schedule: LrSchedule
    early_stopping_patience: optional(COUNT, "no early stopping")
    tta: FLAG
    label_smoothing: LABEL_SMOOTHING

    @model_validator(mode="after")
    def _fits(self) -> "Scratch":
        if self.image_size < MIN_IMAGE_SIZE:
            raise refuse(
                "image_size",
                self.image_size,
                f"is too small for the small convnet: it needs at least {MIN_IMAGE_SIZE} px (4 x conv3x3 + pool2)",
            )
        return self


class FeatureExtract(Technique):
    """A dense head on a frozen pretrained base."""

    name: str
    kind: Literal["feature_extract"]
    image_size: IMAGE_SIZE
    mode: choice("cached", "augmented")
    augment: FLAG
    cached_flips: FLAG
    head: Head
    batch_size: COUNT
    extract_batch_size: COUNT
    eval_batch_size: COUNT
    epochs: COUNT
    optimizer: Optimizer
    lr_schedule: LrSchedule
    early_stopping_patience: optional(COUNT, "no early stopping")
    tta: FLAG
    label_smoothing: LABEL_SMOOTHING

    @property
    def cached(self) -> bool:
        return self.mode == "cached"


class FineTune(Technique):
    """A pretrained base with its top blocks trainable, starting from feature-extract's head."""

    name: str
    kind: Literal["fine_tune"]
    image_size: IMAGE_SIZE
    unfreeze_blocks: BLOCKS
    batchnorm: choice("frozen", "update")
    augment: FLAG
    head: Head
    batch_size: COUNT
    eval_batch_size: COUNT
    epochs: COUNT
    optimizer: Optimizer
    lr_schedule: LrSchedule
    early_stopping_patience: optional(COUNT, "no early stopping")
    tta: FLAG
    label_smoothing: LABEL_SMOOTHING


WIDTHS = Annotated[
    list[Annotated[int, Field(ge=1, le=4096)]],
    Field(min_length=1, max_length=10),
    *explained("must be a list of 1 to 10 block widths, each a positive integer (at most 4,096 channels)"),
]


class Modern(Technique):
    """A mini Xception trained from scratch with today's practice (modern): its network, label smoothing and its
    own augmentation (`smallvision.models.modern`)."""

    name: str
    kind: Literal["modern"]
    image_size: IMAGE_SIZE
    widths: WIDTHS
    separable: FLAG
    stem_kernel: whole(1, 15, "odd: the padding keeps the size")
    stem_stride: whole(1, 4)
    dropout: real(0, 1, high_open=True)
    label_smoothing: LABEL_SMOOTHING
    augmentation: Augmentation
    mixup_alpha: real(0, 100, why="0: off; else the Beta(a, a) that draws each batch's mixing weight")
    cutmix_alpha: real(0, 100, why="0: off; else the Beta(a, a) that draws each batch's kept area")
    ema_decay: optional(real(0, 1, high_open=True, why="0: the weights as trained"), "no average of the weights")
    batch_size: COUNT
    eval_batch_size: COUNT
    epochs: COUNT
    optimizer: Optimizer
    lr_schedule: LrSchedule
    early_stopping_patience: optional(COUNT, "no early stopping")
    tta: FLAG

    @model_validator(mode="after")
    def _odd(self) -> "Modern":
        if self.stem_kernel % 2 == 0:
            raise refuse("stem_kernel", self.stem_kernel, "must be odd (1, 3, 5, ...): the padding keeps the size")
        return self


AnyTechnique = Scratch | Modern | FeatureExtract | FineTune
TechniqueSettings = Annotated[AnyTechnique, Field(discriminator="kind")]
TECHNIQUE_KINDS = ("scratch", "modern", "feature_extract", "fine_tune")

"""Checks of configuration values: their type and bounds, and `NUMBERS`, the one table of every numeric setting's
bounds, which each entry script checks first (`check_settings`). The values and their defaults live in conf/;
every message names the key, the value and what is allowed.

Every number in the table is finite and bounded on both sides: NaN, infinities and absurdly large values are
refused before any work, whatever the key.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

from smallvision.errors import ConfigError

Check = Callable[[Any, str], Any]  # check(value, key): the value, or ConfigError naming the key

SEED_MAX = 2**32 - 1  # numpy's and Lightning's seeds are 32-bit
MAX_BYTES = 10**15  # a petabyte: any larger byte count is a typo
MAX_IMAGE_SIZE = 16384  # px; a decoded 16384 px RGB image alone is 805 MB (training also checks the memory it needs)
REST = "rest"  # data.split.test=rest: every valid image train and val leave over
PILLOW_MAX_PIXELS = 2 * 89_478_485  # Pillow refuses larger images while opening them, whatever the setting
_BIG = 1_000_000  # a generous ceiling for counts (batch sizes, epochs, units)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A finite int or float (not a bool, not NaN, not an infinity)."""
    return is_int(value) or (isinstance(value, float) and math.isfinite(value))


def whole_number(value: Any, key: str, minimum: int = 1, maximum: int | None = None, why: str = "") -> int:
    """An integer in [minimum, maximum] (minimum 1: "a positive integer")."""
    if not is_int(value) or value < minimum or (maximum is not None and value > maximum):
        wanted = "a positive integer" if minimum == 1 else f"a whole number >= {minimum:,}"
        notes = [f"at most {maximum:,}"] if maximum is not None else []
        notes += [why] if why else []
        raise ConfigError(f"{key}={value!r} must be {wanted}" + (f" ({'; '.join(notes)})" if notes else ""))
    return value


def positive_number(value: Any, key: str) -> float:
    if not is_real(value) or value <= 0:
        raise ConfigError(f"{key}={value!r} must be a positive (finite) number")
    return float(value)


def number_in(
    value: Any,
    key: str,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
    why: str = "",
) -> float:
    """A finite number in [low, high]; `low_open`/`high_open` exclude that end."""
    if not is_real(value) or not low <= value <= high or (low_open and value == low) or (high_open and value == high):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{key}={value!r} must be a number in {interval}" + (f" ({why})" if why else ""))
    return float(value)


def one_of(value: Any, key: str, allowed: Collection[str]) -> Any:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is unknown; allowed: {', '.join(allowed)}")
    return value


# --------------------------------------------------------------------------- checks for the table


def _whole(low: int, high: int, why: str = "") -> Check:
    return lambda value, key: whole_number(value, key, low, high, why)


def _real(low: float, high: float, *, low_open: bool = False, high_open: bool = False, why: str = "") -> Check:
    return lambda value, key: number_in(value, key, low, high, low_open=low_open, high_open=high_open, why=why)


def _optional(check: Check, null_means: str) -> Check:
    """`check`, or null (which means `null_means`)."""

    def optional(value: Any, key: str) -> Any:
        if value is None:
            return None
        try:
            return check(value, key)
        except ConfigError as err:
            raise ConfigError(f"{err}, or null ({null_means})") from None

    return optional


def _numbers(count: int, check: Check) -> Check:
    """A list of `count` numbers, each passing `check`."""

    def numbers(value: Any, key: str) -> list:
        if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != count:
            raise ConfigError(f"{key}={value!r} must be a list of {count} numbers")
        return [check(item, f"{key}[{i}]") for i, item in enumerate(value)]

    return numbers


def _count_or_fraction(value: Any, key: str) -> int | float:
    """data.split.*: a count of images per class (integer >= 0) or a fraction in [0, 1); the test split also `rest`."""
    if key == "data.split.test" and value == REST:
        return value
    if (is_int(value) and 0 <= value <= 10**9) or (is_real(value) and isinstance(value, float) and 0 <= value < 1):
        return value
    raise ConfigError(
        f"{key}={value!r} must be a count of images per class (an integer >= 0) or a fraction in [0, 1)"
        + (", or rest (every image train and val leave)" if key == "data.split.test" else "")
    )


def _blocks(value: Any, key: str) -> int | str:
    """unfreeze_blocks: a whole number of top blocks, or `all`: the whole base."""
    if value == "all" or (is_int(value) and 0 <= value <= 1000):
        return value
    raise ConfigError(f"{key}={value!r} must be a whole number of top blocks (0 to 1000), or all: the whole base")


def _devices(value: Any, key: str) -> int:
    if value == -1 and is_int(value):
        return value
    return whole_number(value, key, 1, 4096, why="or -1: every visible GPU")


def _index_or_path(value: Any, key: str) -> int | str:
    """An image chosen by its index into a split (negative counts from the end) or by its manifest path."""
    if isinstance(value, str) or (is_int(value) and abs(value) <= 10**9):
        return value
    raise ConfigError(f"{key}={value!r} must be an index into the split (an integer) or a manifest path")


_SECONDS = _real(0, 3600, low_open=True, why="seconds")
_BYTES = _real(0, MAX_BYTES, low_open=True, why="bytes")
_SEED = _whole(0, SEED_MAX, "seeds are 32-bit")
_COLUMNS = _whole(1, 1024)
_IMAGE_SIZE = _whole(16, MAX_IMAGE_SIZE, "px")

# Every numeric setting in conf/ and its bounds ("*" stands for one key, e.g. a technique's name). A test composes
# every config group and fails on a numeric key missing here, and feeds each stage wrong values of each key.
NUMBERS: dict[str, Check] = {
    "seed": _SEED,
    "data.size": _optional(_whole(1, MAX_BYTES, "bytes"), "not checked"),
    "data.connect_timeout_s": _SECONDS,
    "data.download_retries": _whole(0, 100),
    "data.max_extract_bytes": _BYTES,
    "data.max_download_bytes": _BYTES,
    "data.min_download_bytes_per_s": _real(0, 1e9, low_open=True, why="bytes per second"),
    "data.download_rate_window_s": _SECONDS,
    "data.synthetic.per_class": _whole(1, _BIG),
    "data.synthetic.image_size": _whole(16, 4096, "px"),
    "data.synthetic.seed": _SEED,
    "data.split.*": _count_or_fraction,
    "data.workers": _optional(_whole(1, 1024), "all cores"),
    "data.max_image_pixels": _optional(
        _whole(1, PILLOW_MAX_PIXELS, "Pillow refuses larger images anyway"), "only Pillow's own limit"
    ),
    "data.max_image_bytes": _optional(_BYTES, "no limit"),
    "backbone.image_size": _IMAGE_SIZE,
    "backbone.mean": _numbers(3, _real(0, 1)),
    "backbone.std": _numbers(3, _real(0, 1, low_open=True)),
    "backbone.weights.hub_timeout_s": _SECONDS,
    "backbone.unfreeze_blocks": _blocks,
    "backbone.crop_pct": _optional(
        _real(0, 1, low_open=True, why="the centre crop's share of the resized shorter side"),
        "timm's pretrained config",
    ),
    "augmentation.rotation_range": _real(0, 180, why="degrees"),
    "augmentation.width_shift_range": _real(0, 1, why="of the width"),
    "augmentation.height_shift_range": _real(0, 1, why="of the height"),
    "augmentation.shear_range": _real(0, math.pi / 2, high_open=True, why="radians"),
    "augmentation.zoom_range": _real(0, 1, high_open=True, why="zoom factors 1 - z to 1 + z stay positive"),
    "augmentation.cval": _real(0, 255, why="a grey level"),
    "trainer.devices": _devices,
    "trainer.num_nodes": _whole(1, 100_000),
    "trainer.num_workers": _whole(0, 1024),
    "trainer.log_every_n_steps": _whole(1, 10**9),
    "logger.http_timeout_s": _SECONDS,
    "logger.http_max_retries": _whole(0, 100),
    "techniques.*.image_size": _IMAGE_SIZE,
    "techniques.*.dropout": _real(0, 1, high_open=True),
    "techniques.*.batch_size": _whole(1, _BIG),
    "techniques.*.eval_batch_size": _whole(1, _BIG),
    "techniques.*.extract_batch_size": _whole(1, _BIG),
    "techniques.*.epochs": _whole(1, _BIG),
    "techniques.*.unfreeze_blocks": _blocks,
    "techniques.*.optimizer.weight_decay": _real(0, 1),
    "techniques.*.optimizer.layer_decay": _real(0, 1, low_open=True, why="1: the same rate for every layer"),
    "techniques.*.lr_schedule.warmup_epochs": _real(0, _BIG, why="epochs, below techniques.*.epochs"),
    "techniques.*.early_stopping_patience": _optional(_whole(1, _BIG), "no early stopping"),
    "techniques.*.head.units": _whole(1, _BIG),
    "techniques.*.head.dropout": _real(0, 1, high_open=True),
    "techniques.*.optimizer.lr": _real(0, 10, low_open=True),
    "techniques.*.optimizer.alpha": _real(0, 1, high_open=True),
    "techniques.*.optimizer.eps": _real(0, 1, low_open=True),
    "techniques.*.optimizer.momentum": _real(0, 1, high_open=True),
    "predict.batch_size": _whole(1, _BIG),
    "visualize.threads": _optional(_whole(1, 1024), "torch's default"),
    "visualize.dpi": _whole(1, 1200),
    "visualize.test_image": _index_or_path,
    "visualize.reference.*": _real(0, 1, why="an accuracy"),
    "visualize.activations.max_channels": _optional(_whole(1, _BIG), "every channel"),
    "visualize.activations.columns": _COLUMNS,
    "visualize.filters.per_layer": _whole(1, 4096),
    "visualize.filters.columns": _COLUMNS,
    "visualize.filters.steps": _whole(0, 100_000),
    "visualize.filters.step_size": _real(0, 255, why="grey levels"),
    "visualize.filters.noise": _real(0, 128, why="grey levels"),
    "visualize.filters.image_size": _optional(_whole(1, 4096, "px"), "the network's input size"),
    "visualize.filters.seed": _SEED,
    "visualize.gradcam.per_group": _whole(1, 1000),
    "visualize.gradcam.image_weight": _real(0, 1, why="the image's share of the overlay"),
    "visualize.curves.smoothing": _real(0, 1, high_open=True, why="0: raw curves; the book uses 0.8"),
    "visualize.augmentation_preview.image": _index_or_path,
    "visualize.augmentation_preview.count": _whole(1, 1000),
    "visualize.augmentation_preview.columns": _COLUMNS,
    "visualize.augmentation_preview.seed": _SEED,
    "visualize.mistakes.max_images": _whole(1, 10_000),
    "visualize.mistakes.columns": _COLUMNS,
    "visualize.mistakes.image_size": _whole(1, 4096, "px"),
    "visualize.finetuning.images": _whole(1, 10_000),
    "visualize.patches.channels": _whole(1, 4096),
    "visualize.patches.top": _whole(1, 1000),
    "visualize.patches.columns": _COLUMNS,
    "visualize.patches.images": _optional(_whole(1, _BIG), "the whole validation split"),
    "visualize.patches.batch_size": _whole(1, 4096),
    "visualize.kernels.columns": _COLUMNS,
    "lr_find.min_lr": _real(0, 10, low_open=True, why="below lr_find.max_lr"),
    "lr_find.max_lr": _real(0, 10, low_open=True),
    "lr_find.num_training": _whole(
        12, 10_000, "the suggestion skips the first 10 points and needs 2 more; a range test needs a few hundred"
    ),
    "export.opset": _whole(18, 100, "PyTorch's torch.export-based exporter writes opset 18 and newer"),
    "export.check_images": _whole(2, 10_000, "the parity check's batch"),
    "export.tolerance": _real(0, 1, low_open=True, why="the largest difference from PyTorch's outputs"),
}

# Every true/false setting: a word such as "abc" or "no" must not pass for true
FLAGS = (
    "techniques.*.augment",
    "techniques.*.tta",
    "techniques.*.cached_flips",
    "augmentation.horizontal_flip",
    "trainer.channels_last",
    "trainer.compile",
    "trainer.deterministic",
    "trainer.progress",
    "logger.enabled",
    "logger.log_models",
    "visualize.*.enabled",  # the report's switchable sections
    "visualize.patches.interior",
)

_IMAGE_LIMITS = ("data.max_image_pixels", "data.max_image_bytes")
# The numeric settings each entry script reads (key prefixes; "{technique}" is the technique it runs).
STAGES: dict[str, tuple[str, ...]] = {
    "download": (
        "data.size",
        "data.connect_timeout_s",
        "data.download_retries",
        "data.max_extract_bytes",
        "data.max_download_bytes",
        "data.min_download_bytes_per_s",
        "data.download_rate_window_s",
        "data.synthetic",
    ),
    "split": ("seed", "data.split", "data.workers", *_IMAGE_LIMITS),
    "train": (
        "seed",
        "data.workers",
        *_IMAGE_LIMITS,
        "backbone",
        "augmentation",
        "trainer",
        "logger",
        "techniques.{technique}",
        "visualize.dpi",  # a sweep draws its seed comparison
        "visualize.reference",
    ),
    "predict": ("predict", "trainer.progress", "logger", *_IMAGE_LIMITS),  # logger: predict.model=models:/...
    "visualize": ("visualize", "logger", "augmentation", "backbone", "seed", "techniques.*.image_size", *_IMAGE_LIMITS),
    "log_metrics": ("logger", "seed", *_IMAGE_LIMITS),
    "compare_seeds": ("visualize.dpi", "visualize.reference"),
    "export": ("export", *_IMAGE_LIMITS),
    "lr_find": (
        "seed",
        "data.workers",
        *_IMAGE_LIMITS,
        "backbone",
        "augmentation",
        "trainer",
        "techniques.{technique}",
        "lr_find",
    ),
}


def numeric_settings(
    cfg: Mapping[str, Any], prefixes: Sequence[str], patterns: Collection[str] = NUMBERS
) -> Iterator[tuple[str, str, Any]]:
    """(pattern, key, value) of every setting in `cfg` that `patterns` (NUMBERS) name and that lies under one of
    `prefixes`."""
    wanted = [p.split(".") for p in prefixes]
    for pattern in patterns:
        for parts, value in _expand(cfg, pattern.split(".")):
            if any(len(w) <= len(parts) and all(map(fnmatch.fnmatchcase, parts, w)) for w in wanted):
                yield pattern, ".".join(parts), value


def _expand(node: Any, pattern: list[str], done: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if not pattern:
        yield done, node
        return
    if not isinstance(node, Mapping):
        return
    head, rest = pattern[0], pattern[1:]
    for key in list(node) if head == "*" else [head] if head in node else []:
        yield from _expand(node[key], rest, (*done, str(key)))


def check_numbers(cfg: Mapping[str, Any], prefixes: Sequence[str]) -> None:
    """Check every numeric setting of `cfg` under `prefixes` against NUMBERS, and every FLAGS setting is true or
    false (ConfigError naming the first bad one)."""
    for pattern, key, value in numeric_settings(cfg, prefixes):
        NUMBERS[pattern](value, key)
    for _, key, value in numeric_settings(cfg, prefixes, FLAGS):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} must be true or false")


def check_settings(cfg: Mapping[str, Any], stage: str) -> None:
    """Check every numeric setting `stage` reads (STAGES) against NUMBERS, before the stage does any work."""
    check_numbers(cfg, [p.replace("{technique}", str(cfg.get("technique"))) for p in STAGES[stage]])

"""Random wrong values for every numeric setting (and true/false one), fed to every entry script that reads it: each
must stop with exit status 2 and one `smallvision: error:` line naming the key, before any work and without a
traceback.

The bounds live in one table, `smallvision.checks.NUMBERS`, and each stage's keys in `checks.STAGES`; the first test
fails on a numeric key in conf/ that the table misses, so a new setting cannot go unchecked. The stages run in this
process (helpers.entry: each script's own `@friendly_errors` main on a composed config), which keeps ~1,500 runs
well under a minute; test_bad_config.py runs a few of them as real processes.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers.entry import ROOT, Outcome, assert_one_line_error, call_main, compose_config
from omegaconf import DictConfig, OmegaConf

from smallvision.checks import FLAGS, NUMBERS, STAGES, numeric_settings
from smallvision.entrypoints import to_dict
from smallvision.errors import ConfigError

CONF = ROOT / "conf"
# settings that are null by default and hold something other than a number
NOT_NUMBERS = {
    "backbone.interpolation",  # a name, or null: timm's pretrained config
    "backbone.weights.file",
    "backbone.weights.package",
    "backbone.weights.url",
    "data.classes",
    "data.sha256",
    "data.synthetic",
    "logger.tracking_uri",
    "predict.input",
    "predict.model",
    "visualize.filters.scratch_layers",
    "visualize.filters.transfer_layers",
    "visualize.patches.scratch_layers",
    "visualize.patches.transfer_layers",
}
INDEX_OR_PATH = {"visualize.test_image", "visualize.augmentation_preview.image"}  # a string is a manifest path
# what no numeric setting may take: wrong types, NaN, infinities, absurd magnitudes
NEVER = [float("nan"), float("inf"), float("-inf"), True, 1e30, -1e30, 10**30, -(10**30), [1.0], {"a": 1}]
CASES_PER_KEY = 4  # random values per key and stage, on top of NEVER, "abc", -1, 0 and 1.5


def every_config() -> list[dict]:
    """conf/ composed with each option of each config group (techniques are composed all at once anyway); a file
    whose name starts with _ is a base the options extend, not an option."""
    configs = [to_dict(compose_config())]
    for group in sorted(p for p in CONF.iterdir() if p.is_dir() and p.name not in ("hydra", "techniques")):
        options = sorted(p.stem for p in group.glob("*.yaml") if not p.stem.startswith("_"))
        configs += [to_dict(compose_config(f"{group.name}={option}")) for option in options]
    return configs


def leaves(node: dict, prefix: str = ""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def is_numeric(value: Any) -> bool:
    items = value if isinstance(value, list) and value else [value]
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items)


def pattern_of(key: str, patterns=NUMBERS) -> str | None:
    parts = key.split(".")
    for pattern in patterns:
        wanted = pattern.split(".")
        if len(wanted) == len(parts) and all(w in ("*", p) for w, p in zip(wanted, parts)):
            return pattern
    return None


def refuses(pattern: str, value: Any) -> bool:
    try:
        NUMBERS[pattern](value, "key")
    except ConfigError:
        return True
    return False


def test_every_numeric_setting_has_bounds_and_a_stage_that_checks_it():
    configs = every_config()
    unbounded = {
        key
        for cfg in configs
        for key, value in leaves(cfg)
        if (is_numeric(value) or (value is None and key not in NOT_NUMBERS)) and pattern_of(key) is None
    }
    assert not unbounded, f"numeric settings without bounds in smallvision.checks.NUMBERS: {sorted(unbounded)}"
    flags = {key for cfg in configs for key, value in leaves(cfg) if isinstance(value, bool)}
    assert not {key for key in flags if pattern_of(key, FLAGS) is None}, "true/false settings missing in checks.FLAGS"
    used = {pattern_of(key) for cfg in configs for key, _ in leaves(cfg)}
    assert set(NUMBERS) <= used, f"bounds for settings conf/ does not have: {sorted(set(NUMBERS) - used)}"
    prefixes = [p.replace("{technique}", "*") for keys in STAGES.values() for p in keys]
    checked = {
        pattern
        for cfg in configs
        for patterns in (NUMBERS, FLAGS)
        for pattern, _, _ in numeric_settings(cfg, prefixes, patterns)
    }
    assert set(NUMBERS) | set(FLAGS) <= checked, (
        f"settings no stage checks (checks.STAGES): {sorted(set(NUMBERS) - checked)}"
    )


@pytest.mark.parametrize("pattern", list(NUMBERS))
def test_no_bound_admits_a_value_no_setting_takes(pattern):
    admitted = [v for v in NEVER if not refuses(pattern, v)]
    if pattern not in INDEX_OR_PATH:
        admitted += [v for v in ("abc", "1") if not refuses(pattern, v)]
    assert not admitted, f"{pattern} admits {admitted}"


def random_value(rng: random.Random) -> Any:
    """A wrong-looking value of a random kind: a number of any sign and magnitude, a word, a bool, a list."""
    kind = rng.choice(["float", "int", "tiny", "word", "special", "list"])
    if kind == "float":
        return rng.choice([-1, 1]) * 10 ** rng.uniform(-3, 40)
    if kind == "int":
        return rng.choice([-1, 1]) * rng.randrange(0, 10 ** rng.randint(1, 25))
    if kind == "tiny":
        return rng.choice([-1, 1]) * 10 ** rng.uniform(-320, -3)
    if kind == "word":
        return "".join(rng.choice("abcxyz_-.") for _ in range(rng.randint(1, 8)))
    if kind == "special":
        return rng.choice([float("nan"), float("inf"), float("-inf"), True, False, None])
    return [rng.uniform(-2, 2) for _ in range(rng.randint(0, 4))]


def fuzz_values(stage: str, key: str) -> list[Any]:
    rng = random.Random(f"{stage}:{key}")  # the same values on every run: a failure can be replayed
    return [*NEVER, "abc", -1, 0, 1.5, *(random_value(rng) for _ in range(CASES_PER_KEY))]


@contextmanager
def setting(cfg: DictConfig, key: str, value: Any) -> Iterator[DictConfig]:
    """`cfg` with `key` set to `value`, for the duration (cheaper than a new config per value)."""
    *parents, last = key.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    kept = copy.deepcopy(node[last])
    node[last] = value
    try:
        yield cfg
    finally:
        node[last] = kept


# the configs each stage is fuzzed on: (overrides, the keys to fuzz there); train runs each technique for its keys
STAGE_RUNS = {
    "download": [(["data=synthetic"], None)],
    "split": [([], None)],
    "train": [(["technique=baseline"], None)]
    + [([f"technique={t}"], f"techniques.{t}") for t in ("augment", "feature_extract", "fine_tune")],
    "predict": [([], None)],
    "visualize": [([], None)],
    "log_metrics": [([], None)],
    "compare_seeds": [([], None)],
    "export": [([], None)],
    "lr_find": [(["technique=fine_tune"], None)],
}


@pytest.mark.parametrize("stage", list(STAGE_RUNS))
def test_each_stage_refuses_wrong_numbers_in_one_line(stage, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    failures, runs = [], 0
    for overrides, only in STAGE_RUNS[stage]:
        # resolved: an override replaces the value itself, as on the command line
        cfg = OmegaConf.create(to_dict(compose_config(*overrides)))
        prefixes = [p.replace("{technique}", cfg.technique) for p in STAGES[stage]]
        numbers = [
            (key, [v for v in fuzz_values(stage, key) if refuses(pattern, v)])  # valid ones would start work
            for pattern, key, _ in numeric_settings(cfg, prefixes)
        ]
        flags = [(key, ["abc", 1, 0, None, 1.5]) for _, key, _ in numeric_settings(cfg, prefixes, FLAGS)]
        for key, values in numbers + flags:
            if only and not key.startswith(only):
                continue
            for value in values:
                runs += 1
                with setting(cfg, key, value):
                    outcome = run(stage, cfg, tmp_path, capsys)
                try:
                    assert_one_line_error(outcome, key)
                except AssertionError as err:
                    failures.append(f"{key}={value!r}: {str(err).splitlines()[0]}")
    assert runs > 0
    assert not failures, f"{len(failures)} of {runs} wrong values got through:\n" + "\n".join(failures[:20])
    assert {p.name for p in tmp_path.iterdir()} <= {"sweep"}, "a stage wrote something before refusing a value"


def run(stage: str, cfg: DictConfig, tmp_path: Path, capsys) -> Outcome:
    """The stage's main on `cfg`; compare_seeds reads cfg.visualize from a sweep's multirun.yaml."""
    try:
        if stage == "compare_seeds":
            sweep = tmp_path / "sweep"
            sweep.mkdir(exist_ok=True)
            OmegaConf.save(OmegaConf.create({"visualize": cfg.visualize}), sweep / "multirun.yaml")
            return call_main(stage, [str(sweep)], capsys)
        return call_main(stage, cfg, capsys)
    except Exception as err:  # noqa: BLE001 - a traceback is exactly what this test looks for
        return Outcome(1, "", f"Traceback: {type(err).__name__}: {err}")


def test_the_fuzzed_values_are_wrong_in_every_way():
    """The generator reaches every kind the issue names: wrong type, negative, zero, NaN, infinite, huge."""
    values = [v for key in ("seed", "techniques.baseline.optimizer.lr") for v in fuzz_values("train", key)]
    assert any(isinstance(v, str) for v in values) and any(isinstance(v, list) for v in values)
    assert any(isinstance(v, (int, float)) and v < 0 for v in values) and 0 in values
    assert any(isinstance(v, float) and math.isnan(v) for v in values)
    assert any(isinstance(v, float) and math.isinf(v) for v in values) and 10**30 in values

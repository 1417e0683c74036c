"""Random wrong values for every numeric setting (and true/false one), fed to the entry scripts: each must stop with
exit status 2 and one `smallvision: error:` line naming the key, before any work and without a traceback.

The types and bounds live in one schema, `smallvision.schema.Settings`, which every entry script validates whole
before any work. The first tests fail on a key of a composed config that the schema lacks, on a numeric setting
without bounds and on a true/false one that is not strict, so a new setting cannot go unchecked. The stages run in
this process (helpers.entry: each script's own `@friendly_errors` main on a composed config), which keeps ~2,500
runs to about a minute; test_bad_config.py runs a few of them as real processes.
"""

from __future__ import annotations

import copy
import math
import random
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import annotated_types as at
import pytest
from helpers import ROOT
from helpers.entry import Outcome, assert_one_line_error, call_main, compose_config
from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from smallvision.entrypoints import to_dict
from smallvision.schema import Rule, Settings, validate

CONF = ROOT / "conf"
# what no numeric setting may take: wrong types, NaN, infinities, absurd magnitudes
NEVER = [float("nan"), float("inf"), float("-inf"), True, 1e30, -1e30, 10**30, -(10**30), [1.0], {"a": 1}]
CASES_PER_KEY = 4  # random values per key, on top of NEVER, "abc", -1, 0 and 1.5


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


def _metadata(items) -> list:
    """Annotated metadata with pydantic's FieldInfo opened up into its constraints."""
    out = []
    for item in items:
        out += [*item.metadata, item] if isinstance(item, FieldInfo) else [item]
    return out


def models_in(tp: Any) -> Iterator[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        yield tp
    for arg in get_args(tp):
        yield from models_in(arg)


def scalars(tp: Any, meta: tuple = ()) -> Iterator[tuple[Any, list]]:
    """(type, its constraints) of every int, float and bool a field's type may hold (list items and union members
    included; a Literal is its own bound)."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *extra = get_args(tp)
        yield from scalars(base, (*meta, *_metadata(extra)))
    elif origin in (Union, types.UnionType, list):
        for arg in get_args(tp):
            yield from scalars(arg)
    elif tp in (int, float, bool):
        yield tp, list(meta)


def settings_fields(model: type[BaseModel] = Settings, prefix: str = "") -> Iterator[tuple[str, FieldInfo, type]]:
    """(dotted key, field, model) of every setting of the schema; a dict's keys are `*`, each technique kind's
    fields appear under techniques.*."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        inner = list(models_in(field.annotation))
        if not inner:
            yield key, field, model
        for sub in inner:
            yield from settings_fields(sub, f"{key}.*." if get_origin(field.annotation) is dict else f"{key}.")


def field_type(field: FieldInfo) -> Any:
    return Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation


def numeric_fields() -> dict[str, FieldInfo]:
    """Every setting whose value is (or may be) a number or true/false, by dotted pattern."""
    return {key: field for key, field, _ in settings_fields() if list(scalars(field_type(field)))}


def pattern_of(key: str, patterns) -> str | None:
    parts = key.split(".")
    for pattern in patterns:
        wanted = pattern.split(".")
        if len(wanted) == len(parts) and all(w in ("*", p) for w, p in zip(wanted, parts)):
            return pattern
    return None


NUMERIC = numeric_fields()
INDEX_OR_PATH = {"visualize.test_image", "visualize.augmentation_preview.image"}  # a string is a manifest path


def refuses(pattern: str, value: Any) -> bool:
    try:
        TypeAdapter(field_type(NUMERIC[pattern]), config=ConfigDict(strict=True)).validate_python(value)
    except ValidationError:
        return True
    return False


def test_every_setting_of_every_config_is_in_the_schema_and_every_number_has_bounds():
    for cfg in every_config():
        validate(Settings, cfg)  # raises on a key the schema lacks (extra="forbid") or one it misses
    loose = [model.__name__ for _, _, model in settings_fields() if not model.model_config.get("strict")]
    assert not loose, f"sections whose types are not strict: {sorted(set(loose))}"
    unbounded, unexplained = [], []
    for key, field in NUMERIC.items():
        for tp, constraints in scalars(field_type(field)):
            low = any(isinstance(c, (at.Ge, at.Gt)) for c in constraints)
            high = any(isinstance(c, (at.Le, at.Lt)) for c in constraints)
            if tp is not bool and not (low and high):
                unbounded.append(key)
        if not any(isinstance(m, Rule) for m in field.metadata):
            unexplained.append(key)  # its error would not say what is allowed
    assert not unbounded, f"numeric settings without bounds in smallvision.schema: {sorted(set(unbounded))}"
    assert not unexplained, f"settings without a Rule (the words of their error): {unexplained}"
    keys = {key for cfg in every_config() for key, _ in leaves(cfg)}
    assert {pattern_of(key, NUMERIC) for key in keys} >= set(NUMERIC), "numeric settings no config of conf/ has"


@pytest.mark.parametrize("pattern", list(NUMERIC))
def test_no_bound_admits_a_value_no_setting_takes(pattern):
    flag = [tp for tp, _ in scalars(field_type(NUMERIC[pattern]))] == [bool]
    never = [1, 0, "true", "no", None, 1.5] if flag else NEVER
    admitted = [v for v in never if not refuses(pattern, v)]
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


# the stages fuzzed and their overrides; every stage validates the whole config, so each setting is fuzzed in one
# stage (in turn) and every stage gets a share
STAGE_RUNS = {
    "download": ["data=synthetic"],
    "split": [],
    "train": ["technique=baseline"],
    "predict": [],
    "visualize": [],
    "log_metrics": [],
    "compare_seeds": [],
    "export": [],
    "lr_find": ["technique=fine_tune"],
}


def fuzzed_keys(stage: str, cfg: DictConfig) -> list[str]:
    """The numeric and true/false settings `stage` is fuzzed on: compare_seeds reads visualize alone."""
    keys = sorted(key for key, _ in leaves(to_dict(cfg)) if pattern_of(key, NUMERIC))
    if stage == "compare_seeds":
        return [key for key in keys if key.startswith("visualize.")][::2]
    turn = list(STAGE_RUNS).index(stage)
    return keys[turn :: len(STAGE_RUNS) - 1]


@pytest.mark.parametrize("stage", list(STAGE_RUNS))
def test_each_stage_refuses_wrong_numbers_in_one_line(stage, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    failures, runs = [], 0
    # resolved: an override replaces the value itself, as on the command line
    cfg = OmegaConf.create(to_dict(compose_config(*STAGE_RUNS[stage])))
    for key in fuzzed_keys(stage, cfg):
        pattern = pattern_of(key, NUMERIC)
        flag = [tp for tp, _ in scalars(field_type(NUMERIC[pattern]))] == [bool]
        values = ["abc", 1, 0, None, 1.5] if flag else [v for v in fuzz_values(stage, key) if refuses(pattern, v)]
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

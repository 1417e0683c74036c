"""The schema (smallvision.schema.Settings) holds every setting of every config conf/ composes, every number has
bounds, and the bounds are the ones its definition states: a value just outside each bound is refused with the
one-line error naming the key, a value just inside passes the whole schema. The stages' own refusal of wrong
values: e2e/test_config_fuzz.py."""

from __future__ import annotations

import copy
from typing import get_args, get_origin

import annotated_types as at
import pytest
from helpers.schema_fields import (
    INDEX_OR_PATH,
    NEVER,
    NUMERIC,
    every_config,
    field_type,
    just_outside_and_inside,
    leaves,
    pattern_of,
    refuses,
    scalars,
    settings_fields,
)

from smallvision.errors import ConfigError
from smallvision.schema import Settings, validate
from smallvision.schema_rules import Rule


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


def concrete_key(pattern: str) -> tuple[str, dict]:
    """A key of a composed config that `pattern` (`*` for a dict key) matches, and that config."""
    for cfg in every_config():
        for key, _ in leaves(cfg):
            if pattern_of(key, [pattern]):
                return key, cfg
    raise AssertionError(f"no config of conf/ has {pattern}")


def with_value(cfg: dict, key: str, value, **others) -> dict:
    """`cfg` with `key` set to `value` (each item of a list of numbers: backbone.mean) and its siblings `others`."""
    changed = copy.deepcopy(cfg)
    *parents, last = key.split(".")
    node = changed
    for part in parents:
        node = node[part]
    if pattern_of(key, LISTS):
        value = [value] * 3
    node[last] = value
    node.update(others)
    return changed


def holds_list(tp) -> bool:
    return get_origin(tp) is list or any(holds_list(arg) for arg in get_args(tp))


LISTS = [p for p in NUMERIC if holds_list(field_type(NUMERIC[p]))]  # the lists of 3 numbers (mean, std)


def room(key: str, value) -> dict:
    """What the rules between settings need beside `value` (e.g. data.split: all counts or all fractions, train > 0)."""
    section, _, name = key.rpartition(".")
    if section == "data.split":
        others = {n: (0.0 if isinstance(value, float) else 0) for n in ("train", "val", "test") if n != name}
        if name != "train":
            others["train"] = 1e-10 if isinstance(value, float) else 1
        return others
    if name == "min_lr":
        return {"max_lr": 10.0}
    return {}


# Inside a bound, yet refused by a rule between settings whatever the others hold: the fragment of that rule's error.
# The bound is the type's (shared with settings the rule does not bind); the rule is the tighter one.
RULE_BINDS = {
    "data.split.train": "must be > 0",  # a split trains on something
    "techniques.*.lr_schedule.warmup_epochs": "must be below the epochs",  # epochs <= 1,000,000
    "techniques.*.image_size": "is too small for the small convnet",  # the scratch techniques need 46 px
    "lr_find.min_lr": "must be below lr_find.max_lr",  # max_lr <= 10
    "lr_find.max_lr": "must be below lr_find.max_lr",  # min_lr > 0
}


BOUNDED = [p for p in NUMERIC if just_outside_and_inside(p)]


@pytest.mark.parametrize("pattern", BOUNDED)
def test_each_bound_refuses_just_outside_and_admits_just_inside(pattern):
    key, cfg = concrete_key(pattern)
    if pattern == "techniques.*.lr_schedule.warmup_epochs":  # room for the largest warm-up: the most epochs
        cfg = with_value(cfg, key.removesuffix(".lr_schedule.warmup_epochs") + ".epochs", 1_000_000)
    for outside, inside in just_outside_and_inside(pattern):
        with pytest.raises(ConfigError) as refused:
            validate(Settings, with_value(cfg, key, outside, **room(key, outside)))
        line = str(refused.value)
        shown = [outside] * 3 if pattern in LISTS else outside
        assert "\n" not in line and line.startswith(f"{key}={shown!r} must be "), line
        try:  # the bound itself, or the next value inside it, passes
            validate(Settings, with_value(cfg, key, inside, **room(key, inside)))
        except ConfigError as err:
            assert pattern in RULE_BINDS and RULE_BINDS[pattern] in str(err), f"{key}={inside!r}: {err}"


def test_the_bounds_are_read_from_the_definition():
    """The values fed above follow the field's own constraints: an inclusive bound is inside, an exclusive one
    outside, and the next integer or float beyond it is the other side."""
    lr = [c for _, cs in scalars(field_type(NUMERIC["techniques.*.optimizer.lr"])) for c in cs]
    low = next(c for c in lr if isinstance(c, (at.Gt, at.Ge)))
    pairs = just_outside_and_inside("techniques.*.optimizer.lr")
    if isinstance(low, at.Gt):
        assert pairs[0][0] == low.gt and pairs[0][1] > low.gt
    else:
        assert pairs[0][1] == low.ge and pairs[0][0] < low.ge
    assert len(BOUNDED) >= len([p for p in NUMERIC if [t for t, _ in scalars(field_type(NUMERIC[p]))] != [bool]])

"""The schema's own definition read back: every setting of `smallvision.schema.Settings` by dotted key, its type
and its bounds (pydantic field metadata: annotated_types Ge/Gt/Le/Lt), and every config conf/ composes. The schema
tests check the bounds with it and the stage fuzz test feeds values from it."""

from __future__ import annotations

import math
import types
from collections.abc import Iterator
from functools import cache
from typing import Annotated, Any, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from helpers import ROOT
from helpers.entry import compose_config
from smallvision.entrypoints import to_dict
from smallvision.schema import Settings

CONF = ROOT / "conf"
# what no numeric setting may take: wrong types, NaN, infinities, absurd magnitudes
NEVER = [float("nan"), float("inf"), float("-inf"), True, 1e30, -1e30, 10**30, -(10**30), [1.0], {"a": 1}]


@cache
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


def just_outside_and_inside(pattern: str) -> list[tuple[Any, Any]]:
    """(a value just outside, one just inside) each bound of the setting, read from its definition: the next
    integer for an int, the next representable float for a float."""
    pairs = []
    for tp, constraints in scalars(field_type(NUMERIC[pattern])):
        if tp is bool:
            continue
        for c in constraints:
            if isinstance(c, (at.Ge, at.Gt)):
                bound, down, up = (c.ge if isinstance(c, at.Ge) else c.gt), -math.inf, math.inf
            elif isinstance(c, (at.Le, at.Lt)):
                bound, down, up = (c.le if isinstance(c, at.Le) else c.lt), math.inf, -math.inf
            else:
                continue
            step = (lambda v, to: v + (1 if to > v else -1)) if tp is int else math.nextafter
            bound = tp(bound)
            inclusive = isinstance(c, (at.Ge, at.Le))
            pairs.append((step(bound, down), bound) if inclusive else (bound, step(bound, up)))
    return pairs

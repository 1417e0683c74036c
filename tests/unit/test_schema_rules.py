"""The rules a setting is checked by: each kind's bounds (open and closed ends, an int kept an int), and every
failure of its type or bounds as one error of the setting type that says what is allowed; the errors of rules
between settings; the strict, closed, read-only sections. The one line a user sees: test_schema.py."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError, model_validator

from smallvision.schema_rules import (
    SETTING_ERROR,
    Section,
    choice,
    numbers,
    optional,
    real,
    refuse,
    refuse_line,
    whole,
)


class Example(Section):
    count: whole(1, 100)
    start: whole(0, 9, "the first index")
    share: real(0, 1, high_open=True, why="of the images")
    rate: real(0, 2.5, low_open=True)
    limit: optional(whole(1, 10), "no limit")
    mode: choice("crop", "squash")
    mean: numbers(3, real(0, 1))

    @model_validator(mode="after")
    def _order(self) -> Example:
        if self.start >= self.count:
            raise refuse("start", self.start, f"must be below the count ({self.count})")
        if self.mode == "crop" and self.limit is None:
            raise refuse_line("limit", "is not set: mode=crop needs it")
        return self


GOOD = {"count": 10, "start": 0, "share": 0.5, "rate": 1, "limit": 3, "mode": "squash", "mean": [0.5, 0.5, 0.5]}


def error(**changes) -> dict:
    with pytest.raises(ValidationError) as caught:
        Example.model_validate({**GOOD, **changes})
    (only,) = caught.value.errors()
    return only


def test_a_value_in_bounds_passes_and_an_int_stays_an_int():
    ok = Example.model_validate({**GOOD, "share": 0, "rate": 2.5, "limit": None, "count": 100})
    assert isinstance(ok.share, int) and ok.rate == 2.5 and ok.limit is None and ok.count == 100
    assert Example.model_validate({**GOOD, "rate": 1e-300}).rate == 1e-300  # an open end admits the next float


@pytest.mark.parametrize(
    ("key", "value", "text"),
    [
        ("count", 0, "must be a positive integer (at most 100)"),
        ("count", 101, "must be a positive integer (at most 100)"),
        ("count", 1.0, "must be a positive integer (at most 100)"),  # strict: a float is not an int
        ("count", True, "must be a positive integer (at most 100)"),  # nor a bool
        ("start", -1, "must be a whole number >= 0 (at most 9; the first index)"),
        ("share", 1.0, "must be a number in [0, 1) (of the images)"),
        ("share", 1, "must be a number in [0, 1) (of the images)"),  # the int branch has the open end too
        ("share", math.nan, "must be a number in [0, 1) (of the images)"),
        ("rate", 0, "must be a number in (0, 2.5]"),
        ("rate", 3, "must be a number in (0, 2.5]"),
        ("rate", "1", "must be a number in (0, 2.5]"),
        ("limit", 0, "must be a positive integer (at most 10), or null (no limit)"),
        ("mode", "fit", "is unknown; allowed: crop, squash"),
        ("mean", [0.5, 0.5], "must be a list of 3 numbers, each a number in [0, 1]"),
        ("mean", [0.5, 0.5, 2.0], "must be a list of 3 numbers, each a number in [0, 1]"),
    ],
)
def test_every_failure_of_a_kind_is_one_error_saying_what_is_allowed(key, value, text):
    found = error(**{key: value})
    assert found["type"] == SETTING_ERROR and found["loc"] == (key,)
    assert found["ctx"] == {"text": text} and repr(found["input"]) == repr(value)


def test_a_rule_between_settings_names_its_key_and_value_or_only_its_key():
    found = error(count=5, start=7)
    assert found["type"] == SETTING_ERROR
    assert found["ctx"] == {"text": "must be below the count (5)", "key": "start", "value": 7}
    found = error(mode="crop", limit=None)
    assert found["ctx"] == {"text": "is not set: mode=crop needs it", "key": "limit"}


def test_a_section_refuses_unknown_keys_and_is_read_only():
    assert error(colour="red")["type"] == "extra_forbidden"
    section = Example.model_validate(GOOD)
    with pytest.raises(ValidationError):
        section.count = 5

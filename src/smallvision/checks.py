"""Checks of one configuration value: its type and bounds. The values and their defaults live in conf/; every
message names the key, the value and what is allowed."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from smallvision.errors import ConfigError


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def whole_number(value: Any, key: str, minimum: int = 1) -> int:
    """An integer >= minimum (1: "a positive integer")."""
    if not is_int(value) or value < minimum:
        wanted = "a positive integer" if minimum == 1 else f"a whole number >= {minimum}"
        raise ConfigError(f"{key}={value!r} must be {wanted}")
    return value


def positive_number(value: Any, key: str) -> float:
    if not is_real(value) or value <= 0:
        raise ConfigError(f"{key}={value!r} must be a positive number")
    return float(value)


def number_in(value: Any, key: str, low: float, high: float, *, high_open: bool = False, why: str = "") -> float:
    """A number in [low, high] (or [low, high) with high_open)."""
    if not is_real(value) or not low <= value <= high or (high_open and value == high):
        bracket = ")" if high_open else "]"
        raise ConfigError(f"{key}={value!r} must be in [{low:g}, {high:g}{bracket}" + (f" ({why})" if why else ""))
    return float(value)


def one_of(value: Any, key: str, allowed: Collection[str]) -> Any:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is unknown; allowed: {', '.join(allowed)}")
    return value

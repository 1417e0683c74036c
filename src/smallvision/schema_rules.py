"""The rules a setting's value is checked by, and the words of its error: an integer or number in bounds
(`whole`, `real`), one of some names (`choice`), a list of numbers (`numbers`), or null (`optional`), each failing
as one message that says what is allowed (`Rule`); the error of a rule between settings (`refuse`,
`refuse_line`); the strict, read-only base of every section (`Section`); the kinds of setting the sections share
(`FLAG`, `SEED`, `COUNT`, ...) and their ceilings.

`smallvision.schema` builds the config's models from these and turns their errors into the one line a user sees
(`smallvision.schema.message`): an error of type `SETTING_ERROR` carries its text, and the key and value a rule
between settings names.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WrapValidator
from pydantic_core import PydanticCustomError

SETTING_ERROR = "setting"  # the type of the errors these rules raise


@dataclass(frozen=True)
class Rule:
    """What a setting allows, in the words after `key=value` of its error message (also read by the tests)."""

    text: str


def explained(text: str) -> tuple[Rule, WrapValidator]:
    """Any failure of the wrapped type or bounds becomes one error saying what is allowed: `text`."""

    def check(value: Any, handler: Callable[[Any], Any]) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError(SETTING_ERROR, "{text}", {"text": text}) from None

    return Rule(text), WrapValidator(check)


def _text_of(rule: Any) -> str:
    """The text of a rule made here (`whole`, `real`, `choice`...)."""
    return next(m.text for m in reversed(rule.__metadata__) if isinstance(m, Rule))


def _bounds(low: float, high: float, low_open: bool, high_open: bool, whole: bool = False) -> dict[str, float]:
    """Field bounds of [low, high] (an open end excluded); `whole`: as integers, for the int that a number may be."""
    if whole:
        first = math.floor(low) + 1 if low_open or low != math.floor(low) else int(low)
        last = math.ceil(high) - 1 if high_open or high != math.ceil(high) else int(high)
        return {"ge": first, "le": last}
    return {"gt" if low_open else "ge": low, "lt" if high_open else "le": high}


def whole(low: int, high: int, why: str = "") -> Any:
    """An integer in [low, high] (low 1: "a positive integer")."""
    wanted = "a positive integer" if low == 1 else f"a whole number >= {low:,}"
    notes = [f"at most {high:,}", *([why] if why else [])]
    return Annotated[int, Field(ge=low, le=high), *explained(f"must be {wanted} ({'; '.join(notes)})")]


def real(low: float, high: float, *, low_open: bool = False, high_open: bool = False, why: str = "") -> Any:
    """A finite number in [low, high]; `low_open`/`high_open` exclude that end. An int stays an int (the resolved
    config keeps the value as written)."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    bounds = _bounds(low, high, low_open, high_open)
    whole_bounds = _bounds(low, high, low_open, high_open, whole=True)
    return Annotated[
        Annotated[int, Field(**whole_bounds)] | Annotated[float, Field(allow_inf_nan=False, **bounds)],
        *explained(f"must be a number in {interval}" + (f" ({why})" if why else "")),
    ]


def optional(rule: Any, null_means: str) -> Any:
    """`rule`, or null (which means `null_means`)."""
    return Annotated[rule | None, *explained(f"{_text_of(rule)}, or null ({null_means})")]


def choice(*names: str) -> Any:
    """One of `names`."""
    return Annotated[Literal[names], *explained(f"is unknown; allowed: {', '.join(names)}")]


def numbers(count: int, rule: Any) -> Any:
    """A list of `count` numbers, each passing `rule`."""
    return Annotated[
        list[rule],
        Field(min_length=count, max_length=count),
        *explained(f"must be a list of {count} numbers, each {_text_of(rule).removeprefix('must be ')}"),
    ]


def refuse(key: str, value: Any, text: str) -> PydanticCustomError:
    """The error of a rule between settings: `key` (relative to the section that checks it) and its value."""
    return PydanticCustomError(SETTING_ERROR, "{text}", {"text": text, "key": key, "value": value})


def refuse_line(key: str, text: str) -> PydanticCustomError:
    """The same, for a message that names no single value: `<key> <text>`."""
    return PydanticCustomError(SETTING_ERROR, "{text}", {"text": text, "key": key})


class Section(BaseModel):
    """Strict types, no unknown keys, read-only."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# --------------------------------------------------------------------------- the kinds of setting shared by sections

SEED_MAX = 2**32 - 1  # numpy's and Lightning's seeds are 32-bit
MAX_BYTES = 10**15  # a petabyte: any larger byte count is a typo
MAX_IMAGE_SIZE = 16384  # px; a decoded 16384 px RGB image alone is 805 MB (training also checks the memory it needs)
BIG_COUNT = 1_000_000  # a generous ceiling for counts (batch sizes, epochs, units)

FLAG = Annotated[bool, *explained("must be true or false")]
SEED = whole(0, SEED_MAX, "seeds are 32-bit")
SECONDS = real(0, 3600, low_open=True, why="seconds")
BYTES = real(0, MAX_BYTES, low_open=True, why="bytes")
COLUMNS = whole(1, 1024)
IMAGE_SIZE = whole(16, MAX_IMAGE_SIZE, "px")
COUNT = whole(1, BIG_COUNT)
TECHNIQUE_NAMES = Annotated[list[str], *explained("must be a list of technique names, e.g. [augment, fine_tune]")]
LAYER_NAMES = Annotated[list[str] | None, *explained("must be a list of layer names, or null (the default layers)")]
AMOUNT = Annotated[
    Annotated[int, Field(ge=0, le=10**9)] | Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)],
    *explained("must be a count of images per class (an integer >= 0) or a fraction in [0, 1)"),
]
TEST_AMOUNT = Annotated[
    Annotated[int, Field(ge=0, le=10**9)] | Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] | Literal["rest"],
    *explained(
        "must be a count of images per class (an integer >= 0) or a fraction in [0, 1), "
        "or rest (every image train and val leave)"
    ),
]
BLOCKS = Annotated[
    Annotated[int, Field(ge=0, le=1000)] | Literal["all"],
    *explained("must be a whole number of top blocks (0 to 1000), or all: the whole base"),
]
INDEX_OR_PATH = Annotated[
    Annotated[int, Field(ge=-(10**9), le=10**9)] | str,
    *explained("must be an index into the split (an integer) or a manifest path"),
]
DEVICES = Annotated[
    Annotated[int, Field(ge=1, le=4096)] | Literal[-1],
    *explained("must be a positive integer (at most 4,096; or -1: every visible GPU)"),
]

"""Right/wrong per test image of two classifiers with a given 2 x 2 table (the paired tests' input)."""

from __future__ import annotations

import random


def table(both: int, only_first: int, only_second: int, neither: int) -> tuple[list[bool], list[bool]]:
    """Right/wrong per image of two classifiers with the given 2 x 2 table, the discordant images spread out."""
    pairs = [(True, True)] * both + [(True, False)] * only_first + [(False, True)] * only_second
    pairs += [(False, False)] * neither
    random.Random(0).shuffle(pairs)
    return [a for a, _ in pairs], [b for _, b in pairs]

"""Random wrong values for every numeric setting (and true/false one), fed to the entry scripts: each must stop with
exit status 2 and one `smallvision: error:` line naming the key, before any work and without a traceback.

The types and bounds live in one schema, `smallvision.schema.Settings`, which every entry script validates whole
before any work; unit/test_schema.py checks that every setting is in it and bounded, and each bound where it is
declared. Besides random values, each key gets the values just outside its bounds as declared. The stages run in
this process (helpers.entry: each script's own `@friendly_errors` main on a composed config), which keeps ~2,500
runs to about a minute; e2e/test_bad_config.py runs a few of them as real processes.
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
from helpers.entry import Outcome, assert_one_line_error, call_main, compose_config
from helpers.schema_fields import (
    NEVER,
    NUMERIC,
    field_type,
    just_outside_and_inside,
    leaves,
    pattern_of,
    refuses,
    scalars,
)
from omegaconf import DictConfig, OmegaConf

from smallvision.entrypoints import to_dict

CASES_PER_KEY = 4  # random values per key, on top of NEVER, "abc", -1, 0 and 1.5


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
        # just outside each bound, read from the schema's definition, is wrong by construction; a random value may
        # happen to be allowed, so of those only the ones the field refuses are fed
        wrong = [outside for outside, _ in just_outside_and_inside(pattern)]
        values = (
            ["abc", 1, 0, None, 1.5] if flag else wrong + [v for v in fuzz_values(stage, key) if refuses(pattern, v)]
        )
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

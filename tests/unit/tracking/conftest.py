"""Fixtures of the tracking tests: an experiment per test (in the module's store, tests/unit/conftest.py) and a small
prepared study to train tracked jobs on."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.study import make_dataset


@pytest.fixture
def experiment(request: pytest.FixtureRequest) -> str:
    return f"exp-{request.node.name}"


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tracked"), per_class=8)

"""The entry scripts in pipelines/ run in this process, as `python pipelines/<stage>.py <overrides>` runs them but
without a subprocess: Hydra's compose API builds the config and the script's own `main` gets it (`@hydra.main` passes
a given config straight through to the `@friendly_errors`-wrapped function), so the exit status and stderr are the
ones a user sees. Paths in the config are relative: run from the test's folder (monkeypatch.chdir)."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import cache
from types import ModuleType

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from helpers import ROOT

_PROGRESS = re.compile(r"\[\d\d:\d\d[<,\]]")  # a tqdm bar ("[00:01<00:02, ...]"): progress, not a message


@dataclass
class Outcome:
    code: int
    out: str
    err: str


@cache
def entry_script(stage: str) -> ModuleType:
    """pipelines/<stage>.py as a module (its `if __name__ == "__main__"` part does not run)."""
    spec = importlib.util.spec_from_file_location(f"entry_{stage}", ROOT / "pipelines" / f"{stage}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compose_config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def backbone_config(name: str) -> dict:
    """conf/backbone/<name>.yaml as training gets it: composed with the bases it extends, as plain containers."""
    return OmegaConf.to_container(compose_config(f"backbone={name}").backbone, resolve=True)  # type: ignore[return-value]


def call_main(stage: str, arg: DictConfig | list[str], capsys: pytest.CaptureFixture) -> Outcome:
    """The stage's main on `arg` (a config; compare_seeds: its argv): exit status, stdout and stderr."""
    capsys.readouterr()
    try:
        entry_script(stage).main(arg)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def run_stage(stage: str, capsys: pytest.CaptureFixture, *overrides: str) -> Outcome:
    """`python pipelines/<stage>.py <overrides>`, in this process."""
    return call_main(stage, compose_config(*overrides), capsys)


def assert_one_line_error(outcome: Outcome, *fragments: str) -> None:
    """Exit status 2 and exactly one line on stderr besides progress bars, `smallvision: error: ...`, holding every
    fragment."""
    assert outcome.code == 2, outcome
    lines = [line for line in outcome.err.splitlines() if line.strip() and not _PROGRESS.search(line)]
    assert len(lines) == 1 and lines[0].startswith("smallvision: error: "), outcome.err
    assert "Traceback" not in outcome.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]

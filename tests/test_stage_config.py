"""Each stage prints the part of the resolved config it reads, at its start, and covers what its DVC stage lists."""

from __future__ import annotations

import importlib.util
import re

import pytest
import yaml
from helpers.project import ROOT
from helpers.study import config

from smallvision.entrypoints import show_config
from smallvision.settings import sections_read

DVC_STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def entry_script_reads(script: str) -> tuple[str, ...]:
    spec = importlib.util.spec_from_file_location(f"stage_{script}", ROOT / "pipelines" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.READS


def holds(part: dict, key: str) -> bool:
    node = part
    for name in key.split("."):
        if not isinstance(node, dict) or name not in node:
            return False
        node = node[name]
    return True


@pytest.mark.parametrize("stage", sorted(DVC_STAGES))
def test_each_stage_shows_every_parameter_its_dvc_stage_depends_on(stage: str) -> None:
    cfg, cmd = config(), DVC_STAGES[stage]["cmd"]
    if technique := re.search(r"technique=(\w+)", cmd):  # a training stage
        keys = sections_read({**cfg, "technique": technique.group(1)})
    else:
        keys = entry_script_reads(re.search(r"pipelines/(\w+)\.py", cmd).group(1))
    part = show_config(stage, cfg, keys, echo=False)
    missing = [key for key in DVC_STAGES[stage].get("params", []) if not holds(part, key)]
    assert not missing, f"{stage} depends on {missing} but does not show them"


def test_shown_config_is_compact_and_the_part_the_stage_reads(capsys: pytest.CaptureFixture) -> None:
    cfg = config("technique=augment", "techniques.augment.epochs=3")
    part = show_config("train augment", cfg, sections_read(cfg))
    assert list(part) == ["techniques", "augmentation", "trainer", "seed", "study"]
    assert list(part["techniques"]) == ["augment"] and part["techniques"]["augment"]["epochs"] == 3
    assert part["seed"] == cfg["seed"] and part["trainer"] == cfg["trainer"]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "train augment: configuration read" and len(lines) <= 12  # a few lines per section
    assert lines[1].startswith("  techniques: {augment: {name: augment, kind: scratch,")
    assert lines[-2:] == [f"  seed: {cfg['seed']}", f"  study: {cfg['study']}"]
    assert yaml.safe_load("\n".join(lines[1:])) == part  # what is printed is the config, as YAML

    baseline = show_config(
        "train baseline", cfg | {"technique": "baseline"}, sections_read(cfg | {"technique": "baseline"})
    )
    assert list(baseline) == [
        "techniques",
        "trainer",
        "seed",
        "study",
    ]  # no augmentation, no backbone: it reads neither

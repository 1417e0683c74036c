"""The import walk (smallvision.code_deps): a stage's code is its entry script and the smallvision modules it runs,
imports inside functions included, less what the stage registry says cannot change its outputs; a subpackage it
runs most of is one dep."""

from __future__ import annotations

from helpers import ROOT
from helpers.study import config

from smallvision import stages
from smallvision.code_deps import WHOLE_FOLDER


def code(stage: str) -> list[str]:
    """`stage`'s code deps as dvc.yaml lists them (the walk, less what the registry says has no effect)."""
    return stages.stage(stage, config().model_dump()).code(ROOT)


def test_the_import_walk_finds_nested_and_from_imports_and_skips_code_without_effect():
    deps = code("fine-tune")
    # job.py imports training inside run_training; training imports the datamodule at module level
    assert {
        "pipelines/train.py",
        "src/smallvision/job.py",
        "src/smallvision/training.py",
        "src/smallvision/data/datamodule.py",
        "src/smallvision/modules",  # every module of the subpackage: listed as the folder
    } <= set(deps)
    assert not [d for d in deps if d.startswith(("src/smallvision/tracking", "src/smallvision/visualize"))]
    assert "src/smallvision/sweeps.py" not in deps and "src/smallvision/evidence.py" not in deps
    visualize = code("visualize")
    assert "src/smallvision/evidence.py" in visualize  # the comparison's paired tests are its output


def test_a_subpackage_is_one_dep_only_when_the_stage_runs_most_of_its_modules():
    deps = code("fine-tune")
    for folder in (d for d in deps if not d.endswith(".py")):
        modules = {p for p in (ROOT / folder).rglob("*.py") if p.name != "__init__.py"}
        assert modules and not any(d.startswith(f"{folder}/") for d in deps)
    listed = [d for d in deps if d.startswith("src/smallvision/data/")]
    data = [p for p in (ROOT / "src/smallvision/data").rglob("*.py") if p.name != "__init__.py"]
    assert listed and len(listed) < WHOLE_FOLDER * len(data)  # data/: the stage runs a few of its modules, each listed

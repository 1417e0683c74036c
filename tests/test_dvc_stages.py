"""dvc.yaml and params.yaml stay true to the code: `dvc repro` reruns a stage whenever code it runs changes,
and the committed params.yaml is what `dvc exp run` would compose from conf/ (plain `dvc repro` reads it as is)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from helpers.project import ROOT

SRC = ROOT / "src"


def _smallvision_imports(path: Path) -> set[str]:
    """Every smallvision module `path` imports, at any depth of its code (imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "smallvision"}
        elif (
            isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "smallvision"
        ):
            found.add(node.module)
            # `from smallvision.data import split` imports the module smallvision.data.split
            found |= {f"{node.module}.{a.name}" for a in node.names if _module_file(f"{node.module}.{a.name}")}
    return found


def _module_file(module: str) -> Path | None:
    base = SRC / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def code_files(script: Path) -> set[Path]:
    """The entry script and every smallvision source file it runs, transitively (package __init__ files hold
    only docstrings and are left out)."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo += [f for m in _smallvision_imports(path) if (f := _module_file(m))]
    return {p for p in seen if p.name != "__init__.py"}


DVC_STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]

# Code the stages import that cannot change their DVC outputs: listed as deps, an edit to it would rerun the
# 100-minute training stages for nothing.
NO_EFFECT_ON_OUTPUTS = {
    "src/smallvision/tracking": "MLflow logging only",
    "src/smallvision/sweeps.py": "a Hydra sweep's folder: its seed comparison and its fine-tune jobs' head",
    "src/smallvision/evidence.py": "the paired tests on the study's MLflow run and a sweep's seed comparison",
    "src/smallvision/visualize/seed_comparison.py": "training imports it for a sweep's seed comparison only",
    "src/smallvision/visualize/comparison.py": "the same, through seed_comparison.py",
    "src/smallvision/visualize/backbone_comparison.py": "training imports it for a backbone sweep's comparison only",
    "src/smallvision/visualize/plotting.py": "the same, through comparison.py",
    "src/smallvision/visualize/report.py": "the same (the sweep's report page)",
    "src/smallvision/data/synthetic.py": "generated images for the download stage only",
}
OWN_CODE = {"download": {"src/smallvision/data/synthetic.py"}}  # never exempt


@pytest.mark.parametrize("stage", sorted(DVC_STAGES))
def test_each_stage_depends_on_the_code_it_runs(stage):
    spec = DVC_STAGES[stage]
    script = re.search(r"python (pipelines/\S+\.py)", spec["cmd"]).group(1)
    deps = [ROOT / (d if isinstance(d, str) else next(iter(d))) for d in spec["deps"]]
    exempt = [ROOT / name for name in set(NO_EFFECT_ON_OUTPUTS) - OWN_CODE.get(stage, set())]
    missing = sorted(
        str(f.relative_to(ROOT))
        for f in code_files(ROOT / script)
        if not any(f == d or d in f.parents for d in deps + exempt)
    )
    assert not missing, f"dvc.yaml stage {stage!r} runs these files but does not list them in deps: {missing}"


def test_the_import_walk_finds_nested_and_from_imports():
    files = {str(f.relative_to(ROOT)) for f in code_files(ROOT / "pipelines" / "train.py")}
    # job.py imports training inside run_training; training imports the datamodule at module level
    assert {
        "pipelines/train.py",
        "src/smallvision/job.py",
        "src/smallvision/training.py",
        "src/smallvision/data/datamodule.py",
    } <= files


def test_committed_params_yaml_is_the_composed_conf(tmp_path):
    """`dvc repro` (no -S) reads params.yaml as committed: a key added to conf/ but not to params.yaml would
    reach the stages as missing."""
    from helpers.project import compose_params

    compose_params(tmp_path, conf=ROOT / "conf")
    composed = yaml.safe_load((tmp_path / "params.yaml").read_text())
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert committed == composed, (
        "params.yaml is out of date with conf/; regenerate it (what `dvc exp run` does first): python -c "
        '"import os; from dvc.utils.hydra import compose_and_dump as c; '
        "c('params.yaml', os.path.abspath('conf'), None, 'config', '.', [])\""
    )


# README "Code map": the entry scripts read Hydra and pass plain values on. Two library modules exist to serve them:
# entrypoints.py (what the entry scripts share) and distributed.py (relaunching a Hydra job's DDP ranks).
READS_THE_RUNTIME = {"entrypoints.py", "distributed.py"}
RUNTIME_READS = {
    "hydra.core.hydra_config",  # HydraConfig: Hydra's runtime
    "hydra.utils",  # get_original_cwd, to_absolute_path
    "hydra.main",
    "sys.argv",
    "os.getcwd",
    "Path.cwd",
    "os.chdir",
}


def _is_main_block(node: ast.stmt) -> bool:
    """`if __name__ == "__main__":`, the entry script of a module run with `python -m` (e.g. plots_page)."""
    return isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) and "__name__" in ast.unparse(node.test)


def _runtime_reads(path: Path) -> set[str]:
    found = set()
    module = ast.parse(path.read_text(), filename=str(path))
    library = ast.Module([node for node in module.body if not _is_main_block(node)], type_ignores=[])
    for node in ast.walk(library):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            found |= {node.module or "", *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            found.add(f"{node.value.id}.{node.attr}")
    return {name for name in found if any(name == r or name.startswith(r + ".") for r in RUNTIME_READS)}


def test_the_library_never_reads_hydras_runtime_sys_argv_or_the_working_directory():
    library = [p for p in (SRC / "smallvision").rglob("*.py") if p.name not in READS_THE_RUNTIME]
    assert len(library) > 40
    assert {str(p.relative_to(SRC)): reads for p in library if (reads := _runtime_reads(p))} == {}
    assert _runtime_reads(SRC / "smallvision" / "entrypoints.py")  # (the check does find such reads)

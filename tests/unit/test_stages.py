"""dvc.yaml and params.yaml stay true to the code: dvc.yaml is what the stage registry (smallvision.stages)
generates, so `dvc repro` reruns a stage whenever code it runs or a setting it reads changes, and the committed
params.yaml is what `dvc exp run` would compose from conf/ (plain `dvc repro` reads it as is); each stage prints
the config it reads."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml
from helpers import ROOT
from helpers.study import config

from smallvision import stages
from smallvision.entrypoints import show_config

SRC = ROOT / "src"


def test_the_committed_dvc_yaml_is_what_the_stage_registry_generates():
    """dvc.yaml is generated from smallvision.stages: each stage's params (a training stage's from its technique's
    settings), its code (the entry script and the smallvision modules it imports) and its data."""
    generated = stages.dvc_yaml(stages.composed_conf(ROOT / "conf"), ROOT)
    assert (ROOT / "dvc.yaml").read_text() == generated, (
        "dvc.yaml is out of date with src/smallvision/stages.py or the code's imports; regenerate it: "
        "python -m smallvision.stages > dvc.yaml"
    )


def test_a_training_stage_reads_what_its_technique_needs_and_every_key_exists():
    cfg = config().model_dump()  # the stages read the settings as entry scripts print them
    reads = {s.name: s.reads(cfg) for s in stages.registry(cfg["paths"])}
    assert reads["train-baseline"] == ["techniques.baseline", "trainer", "seed", "preset"]
    assert reads["augment"] == ["techniques.augment", "augmentation", "trainer", "seed", "preset"]
    assert reads["fine-tune"][:3] == ["techniques.fine_tune", "backbone", "augmentation"]
    assert stages.training_reads({**cfg, "technique": "fine_tune"}) == reads["fine-tune"]
    for name, keys in reads.items():  # a misspelt key would fail the stage at its start
        show_config(name, cfg, keys, echo=False)
    assert set(stages.stage("download", cfg).reads(cfg)) > set(stages.stage("download", cfg).dvc_params(cfg))


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

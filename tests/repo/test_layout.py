"""The tests are arranged by layer: every module of src/smallvision has a unit test module named after it
(tests/unit/<package>/test_<module>.py) that imports it, or is listed in COVERED_ELSEWHERE below with the test
module that exercises it and why it has none of its own."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

SRC = ROOT / "src" / "smallvision"
TESTS = ROOT / "tests"

# module (relative to src/smallvision) -> (the test module that exercises it, why it has no unit test module of its
# own). An end-to-end entry (tests/e2e/...) means the module is covered end to end only.
COVERED_ELSEWHERE = {
    "distributed.py": ("e2e/test_ddp.py", "end to end only: DDP processes (rank zero, sweeps' DDP children)"),
    "entrypoints.py": ("e2e/test_bad_config.py", "end to end only: the entry scripts' one-line errors"),
    "files.py": ("e2e/test_outputs.py", "end to end only: the stages' output folders and atomic writes"),
    "sweep_callback.py": ("e2e/test_sweeps.py", "end to end only: the Hydra callback ends a real multirun"),
    "visualize/audit_findings.py": (
        "e2e/test_audit_report.py",
        "its section is drawn from an audit's files by the visualize stage, with the study run's counts",
    ),
    "visualize/report.py": ("e2e/test_report_render.py", "end to end only: the page the stage writes, in a browser"),
    "visualize/sections_learned.py": ("unit/visualize/test_kernels.py", "the sections of the learned pictures"),
}


def library_modules() -> list[str]:
    return sorted(p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py") if p.name != "__init__.py")


def unit_test_of(module: str) -> Path:
    path = Path(module)
    return TESTS / "unit" / path.parent / f"test_{path.name}"


def reexported(package: str) -> dict[str, str]:
    """name -> the module it comes from, for what a package's __init__.py imports (`from smallvision.tracking
    import StudyTracker` uses smallvision.tracking.tracker)."""
    init = SRC.joinpath(*package.split(".")[1:], "__init__.py")
    names = {}
    if init.is_file():
        for node in ast.walk(ast.parse(init.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names |= {a.asname or a.name: node.module for a in node.names}
    return names


def imported(test_file: Path) -> set[str]:
    """The smallvision modules a test module imports (dotted, without `smallvision.`), wherever in the file, the
    ones a package re-exports included."""
    found = set()
    for node in ast.walk(ast.parse(test_file.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            found |= {reexported(node.module)[a.name] for a in node.names if a.name in reexported(node.module)}
    return {name.removeprefix("smallvision.") for name in found if name.startswith("smallvision.")}


def test_every_library_module_has_a_unit_test_module_or_says_where_it_is_covered():
    modules = library_modules()
    missing = [m for m in modules if not unit_test_of(m).is_file() and m not in COVERED_ELSEWHERE]
    assert not missing, f"no tests/unit/<package>/test_<module>.py and not in COVERED_ELSEWHERE: {missing}"
    stale = [m for m in COVERED_ELSEWHERE if m not in modules or unit_test_of(m).is_file()]
    assert not stale, f"COVERED_ELSEWHERE lists modules that are gone or have their own unit test module: {stale}"
    nowhere = [
        f"{m}: {where}" for m, (where, why) in COVERED_ELSEWHERE.items() if not (TESTS / where).is_file() or not why
    ]
    assert not nowhere, f"COVERED_ELSEWHERE names test modules that do not exist: {nowhere}"


def test_a_unit_test_module_imports_the_module_it_is_named_after():
    wrong = []
    for module in library_modules():
        test_file = unit_test_of(module)
        dotted = module.removesuffix(".py").replace("/", ".")
        if test_file.is_file() and dotted not in imported(test_file):
            wrong.append(f"{test_file.relative_to(ROOT)} does not import smallvision.{dotted}")
    assert not wrong, "\n".join(wrong)


# what runs an entry script (in this process or as a user runs it) or a command: the end-to-end tests' helpers
RUNS_A_STAGE = {"helpers.entry": {"entry_script", "run_stage", "call_main"}, "helpers.project": {"run", "start"}}


def runs_a_stage(test_file: Path) -> bool:
    text = test_file.read_text()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and {a.name for a in node.names} & RUNS_A_STAGE.get(node.module, set()):
            return True
    return '"pipelines"' in text  # a path to an entry script


def test_end_to_end_tests_live_apart_from_unit_tests():
    """Unit test modules never run an entry script, dvc or torchrun: that is what tests/e2e holds."""
    stages = [p.relative_to(ROOT).as_posix() for p in (TESTS / "unit").rglob("test_*.py") if runs_a_stage(p)]
    assert not stages, f"unit test modules that run entry scripts (move those tests to tests/e2e): {stages}"

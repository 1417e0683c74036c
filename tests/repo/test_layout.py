"""The tests are arranged by layer: every module of src/smallvision has a unit test module named after it
(tests/unit/<package>/test_<module>.py) that imports it, or is listed in END_TO_END_ONLY below with the test
module that exercises it end to end and why it is covered end to end only."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

SRC = ROOT / "src" / "smallvision"
TESTS = ROOT / "tests"

# module (relative to src/smallvision) -> (the end-to-end test module that covers it, why it is covered end to end
# only). Empty while every module has its own unit test module; an entry is for a module whose behaviour shows only
# when entry scripts, processes or a browser run it, and points into tests/e2e/.
END_TO_END_ONLY: dict[str, tuple[str, str]] = {}


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


def layout_problems(end_to_end_only: dict[str, tuple[str, str]]) -> list[str]:
    """What is wrong with the modules' unit test modules and with `end_to_end_only` (END_TO_END_ONLY's form)."""
    modules = library_modules()
    missing = [m for m in modules if not unit_test_of(m).is_file() and m not in end_to_end_only]
    stale = [m for m in end_to_end_only if m not in modules or unit_test_of(m).is_file()]
    not_e2e = [f"{m}: {where}" for m, (where, _) in end_to_end_only.items() if not where.startswith("e2e/")]
    nowhere = [
        f"{m}: {where}" for m, (where, why) in end_to_end_only.items() if not (TESTS / where).is_file() or not why
    ]
    return (
        [f"no tests/unit/<package>/test_<module>.py and not in END_TO_END_ONLY: {m}" for m in missing]
        + [f"END_TO_END_ONLY lists a module that is gone or has its own unit test module: {m}" for m in stale]
        + [f"END_TO_END_ONLY points outside tests/e2e/ (a unit test belongs in the module's own): {e}" for e in not_e2e]
        + [f"END_TO_END_ONLY names a test module that does not exist, or no reason: {e}" for e in nowhere]
    )


def test_every_library_module_has_a_unit_test_module_or_is_covered_end_to_end_only():
    problems = layout_problems(END_TO_END_ONLY)
    assert not problems, "\n".join(problems)


def test_an_end_to_end_only_entry_must_point_into_tests_e2e(tmp_path, monkeypatch):
    """The check itself, on a module without a unit test module (a made-up src/smallvision)."""
    src = tmp_path / "src" / "smallvision"
    src.mkdir(parents=True)
    (src / "launcher.py").write_text("")
    monkeypatch.setitem(globals(), "SRC", src)
    assert layout_problems({}) == ["no tests/unit/<package>/test_<module>.py and not in END_TO_END_ONLY: launcher.py"]
    assert layout_problems({"launcher.py": ("e2e/test_ddp.py", "DDP processes")}) == []
    (problem,) = layout_problems({"launcher.py": ("unit/test_job.py", "covered there")})
    assert (
        problem.startswith("END_TO_END_ONLY points outside tests/e2e/") and "launcher.py: unit/test_job.py" in problem
    )


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

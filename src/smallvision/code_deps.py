"""The source files a DVC stage depends on: its entry script and every smallvision module it runs, found by
walking the imports in the code (`ast`, nothing imported), so `dvc repro` reruns a stage when code it runs changes
and not when other code does. Which modules cannot change a stage's outputs is the stage registry's to say
(`smallvision.stages.NO_EFFECT_ON_OUTPUTS`)."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path


def _module_file(src: Path, module: str) -> Path | None:
    base = src / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def smallvision_imports(path: Path, src: Path) -> set[Path]:
    """The smallvision source files `path` imports, at any depth of its code (imports inside functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "smallvision"}
        elif (
            isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "smallvision"
        ):
            found.add(node.module or "")
            # `from smallvision.data import split` imports the module smallvision.data.split
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {f for m in found if (f := _module_file(src, m))}


WHOLE_FOLDER = 0.75  # a subpackage listed as one dep when a stage runs at least this share of its modules


def code_deps(root: Path, script: str, no_effect: Iterable[str] = ()) -> list[str]:
    """The entry script `script` (relative to `root`) and every smallvision source file it runs, transitively,
    less the files and folders in `no_effect` (relative to `root`; their imports are not followed); package
    __init__ files, which hold only docstrings, are left out. A subpackage the stage runs most of (`WHOLE_FOLDER`)
    is listed as the folder: a shorter list, at the cost of a rerun when one of its few other modules changes."""
    src = root / "src"
    exempt = [root / name for name in no_effect]
    seen: set[Path] = set()
    todo = [root / script]
    while todo:
        path = todo.pop()
        if path in seen or any(path == e or e in path.parents for e in exempt):
            continue
        seen.add(path)
        todo += smallvision_imports(path, src)
    files = {p for p in seen if p.name != "__init__.py"}
    folders = set()
    for folder in {p.parent for p in files if p.parent != src / "smallvision" and p.parent.is_relative_to(src)}:
        modules = {f for f in folder.rglob("*.py") if f.name != "__init__.py"}
        if len(modules & files) >= WHOLE_FOLDER * len(modules):
            folders.add(folder)
    folders = {f for f in folders if not any(o in f.parents for o in folders)}
    kept = {p for p in files if not any(f in p.parents for f in folders)} | folders
    entry = root / script
    return [script, *sorted(str(p.relative_to(root)) for p in kept - {entry})]

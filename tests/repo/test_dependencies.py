"""pyproject's dependencies are what the code imports: every third-party module imported in src/, pipelines/, tests/
or benchmarks/ comes from a declared distribution (src/ and pipelines/: from a runtime one), and every declared
distribution is imported somewhere, or is on the short list below of those used another way."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

from helpers import ROOT
from helpers.entry import backbone_config

RUNTIME_CODE = ("src", "pipelines")
ALL_CODE = (*RUNTIME_CODE, "tests", "benchmarks")
# declared, never imported by name: why each is needed
USED_OTHERWISE = {
    "onnxscript": "torch.onnx's exporter needs it (the export stage)",
    "hydra-submitit-launcher": "a Hydra plugin, found by Hydra (conf/hydra/launcher/slurm.yaml)",
    "django-js-lib-vega-embed": "its files are read with importlib.resources (smallvision.plots_page)",
    "ruff": "a command: the lint and format check",
    "pre-commit": "a command: runs .pre-commit-config.yaml's hooks on each commit",
    "pytest-xdist": "a pytest plugin: the default suite runs in two processes (pyproject's addopts)",
    "ruamel-yaml-clib": "ruamel.yaml's C loader, which DVC's YAML reads use when it is installed",
}


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> set[str]:
    return {normalised(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r)[0]) for r in requirements}


def declared() -> tuple[set[str], set[str]]:
    """The runtime distributions and those of the optional groups (dev, slurm)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = set().union(*(requirement_names(group) for group in project["optional-dependencies"].values()))
    return requirement_names(project["dependencies"]), extras


def imported(folders: tuple[str, ...]) -> set[str]:
    """Top-level names of the modules imported (absolute imports) by the .py files under `folders`."""
    names = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names


def local_modules() -> set[str]:
    """This repository's own modules (smallvision, the tests' helpers, the benchmarks' shared code, ...)."""
    paths = [p for folder in ALL_CODE for p in (ROOT / folder).rglob("*.py")]
    return {p.stem for p in paths} | {p.parent.name for p in paths if p.name == "__init__.py"} | {"__main__"}


def third_party(folders: tuple[str, ...]) -> dict[str, set[str]]:
    """Each third-party module imported under `folders` -> the distributions that install it."""
    installed = packages_distributions()
    modules = imported(folders) - set(sys.stdlib_module_names) - local_modules()
    return {module: {normalised(d) for d in installed.get(module, [])} for module in sorted(modules)}


def named_in_conf() -> set[str]:
    """The weight packages conf/backbone names (weights.package): imported by that name when a backbone is built."""
    options = [p.stem for p in (ROOT / "conf" / "backbone").glob("*.yaml") if not p.stem.startswith("_")]
    packages = {backbone_config(name)["weights"]["package"] for name in options} - {None}
    installed = packages_distributions()
    return {normalised(d) for package in packages for d in installed.get(package, [package])}


def test_every_imported_module_comes_from_a_declared_distribution():
    runtime, extras = declared()
    missing = {m: dists for m, dists in third_party(RUNTIME_CODE).items() if not dists & runtime}
    assert not missing, f"imported by src/ or pipelines/ but not in pyproject's dependencies: {missing}"
    missing = {m: dists for m, dists in third_party(ALL_CODE).items() if not dists & (runtime | extras)}
    assert not missing, f"imported by tests/ or benchmarks/ but not declared (dependencies or dev): {missing}"


def test_every_declared_distribution_is_used():
    runtime, extras = declared()
    used = set().union(*third_party(ALL_CODE).values()) | named_in_conf() | set(USED_OTHERWISE)
    assert not (runtime | extras) - used, (
        f"declared in pyproject but never imported: {sorted((runtime | extras) - used)}"
    )

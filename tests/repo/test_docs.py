"""The README and docs/ stay true to the repository: every relative link resolves (to a file, and to a heading for
an `#anchor`), every command in their code blocks names a script, preset, technique, config group option or file
that exists, the README's code map names every module of src/smallvision and pipelines/ and only those, the README
stays a front page (at most 250 lines), and no page speaks of issue numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import ROOT

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")


def split_fenced(text: str) -> tuple[list[str], list[str]]:
    """The lines outside fenced code blocks, and the lines inside them."""
    prose, code, inside = [], [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            inside = not inside
            continue
        (code if inside else prose).append(line)
    return prose, code


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (but `-` and `_`), spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its text
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor of a Markdown page's headings, with GitHub's -1, -2 ... for repeated ones."""
    prose, _ = split_fenced(page.read_text())
    seen: dict[str, int] = {}
    found = set()
    for line in prose:
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            n = seen.get(base, 0)
            found.add(base if n == 0 else f"{base}-{n}")
            seen[base] = n + 1
    return found


def broken_links(page: Path) -> list[str]:
    """The relative links of `page` that lead nowhere: a missing file, or an anchor no heading of it has."""
    prose, _ = split_fenced(page.read_text())
    broken = []
    for target in LINK.findall("\n".join(prose)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...: not a file of this repository
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved)):
            broken.append(f"{target} (no heading #{anchor} in {resolved.name})")
    return broken


def code_lines(page: Path) -> list[str]:
    return split_fenced(page.read_text())[1]


def options(group: str) -> set[str]:
    """The options of a config group (conf/<group>/*.yaml; files starting with `_` are bases, not options)."""
    return {p.stem for p in (ROOT / "conf" / group).glob("*.yaml") if not p.stem.startswith("_")}


def missing_names(command: str) -> list[str]:
    """What a command names that does not exist: scripts, benchmark files, conf/ files, presets, techniques and
    config group options (`data=`, `trainer=`, `backbone=`), each value of a comma-separated sweep."""
    missing = []
    for path in re.findall(r"(?<![\w./-])((?:pipelines|benchmarks|conf)/[\w./-]*[\w])", command):
        if not (ROOT / path).exists():
            missing.append(path)
    groups = {
        "preset": "preset",
        "technique": "techniques",
        "data": "data",
        "trainer": "trainer",
        "backbone": "backbone",
    }
    for key, values in re.findall(r"(?<![\w./-])(preset|technique|data|trainer|backbone)=([\w,]+)", command):
        missing += [f"{key}={v}" for v in values.split(",") if v not in options(groups[key])]
    return missing


CODE_MAP_ROW = re.compile(r"^\| (`[^|]*`(?:, `[^|]*`)*) \|")


def code_map_paths() -> set[str]:
    """The files the README's code map names (its first column; `{a,b}.py` expanded), relative to the root."""
    text = README.read_text()
    section = text.split("## Code map", 1)[1].split("\n## ", 1)[0]
    named = set()
    for line in section.splitlines():
        row = CODE_MAP_ROW.match(line)
        if not row:
            continue
        for name in re.findall(r"`([^`]+)`", row.group(1)):
            brace = re.match(r"^(.*)\{([^}]*)\}(.*)$", name)
            for each in (
                [brace.group(1) + part + brace.group(3) for part in brace.group(2).split(",")] if brace else [name]
            ):
                top = each.split("/", 1)[0]
                named.add(each if top in ("pipelines", "tests") else f"src/smallvision/{each}")
    return named


def test_every_relative_link_resolves():
    broken = {str(page.relative_to(ROOT)): broken_links(page) for page in PAGES}
    assert not {page: links for page, links in broken.items() if links}


def test_every_command_names_what_exists():
    missing = {
        str(page.relative_to(ROOT)): sorted({m for line in code_lines(page) for m in missing_names(line)})
        for page in PAGES
    }
    assert not {page: names for page, names in missing.items() if names}


def test_the_code_map_names_every_module_and_only_modules_that_exist():
    named = code_map_paths()
    assert not {p for p in named if not (ROOT / p).exists()}, "the code map names what does not exist"
    package = {"src/smallvision/" + p.parent.name + "/" for p in (ROOT / "src/smallvision").glob("*/__init__.py")}
    modules = {
        str(p.relative_to(ROOT))
        for p in [*(ROOT / "src/smallvision").rglob("*.py"), *(ROOT / "pipelines").glob("*.py")]
        if p.name != "__init__.py"
    }
    # a package named as a whole (`tracking/`) covers its modules
    covered = {m for m in modules if m in named or any(m.startswith(pkg) and pkg in named for pkg in package)}
    assert modules - covered == set(), "modules the code map does not name"


def test_the_readme_is_a_front_page():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move the rest to docs/"


def test_no_page_or_code_speaks_of_issue_numbers():
    """The project's files speak of the project: a tracker's issue numbers mean nothing to a reader of the code."""
    code = [p for folder in ("src", "pipelines", "tests", "benchmarks", "conf") for p in (ROOT / folder).rglob("*")]
    files = [*PAGES, *(p for p in code if p.suffix in (".py", ".yaml", ".sh", ".md"))]
    hits = [
        f"{page.relative_to(ROOT)}:{n}"
        for page in files
        for n, line in enumerate(page.read_text().splitlines(), 1)
        if re.search(r"issue [0-9]", line, re.IGNORECASE)
    ]
    assert not hits


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("The `quick` study over three seeds", "the-quick-study-over-three-seeds"),
        ("The book's settings (`default`)", "the-books-settings-default"),
        (
            "Export: the network in Netron, or served without this project",
            "export-the-network-in-netron-or-served-without-this-project",
        ),
        ("On a SLURM cluster (submitit launcher)", "on-a-slurm-cluster-submitit-launcher"),
    ],
)
def test_anchors_are_githubs(heading, anchor):
    assert slug(heading) == anchor


def test_a_broken_link_and_a_missing_script_are_caught(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# A heading\n")
    page.write_text(
        "[ok](other.md#a-heading) [gone](missing.md) [no anchor](other.md#nowhere)\n"
        "```bash\n[not a link](inside-code.md)\n```\n"
    )
    assert broken_links(page) == ["missing.md (no such file)", "other.md#nowhere (no heading #nowhere in other.md)"]
    assert missing_names("python pipelines/nope.py technique=baseline,nope preset=smoke") == [
        "pipelines/nope.py",
        "technique=nope",
    ]

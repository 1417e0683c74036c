"""The reviewed exclusion list (`data.exclude`, a text file kept in git): images the split leaves out, each with the
reason a person gave (a wrong label, neither class, a copy of another image).

One image a line, its path relative to the raw folder (as manifest.csv writes it), then ` # ` and the reason:

    PetImages/Cat/666.jpg  # neither class: a drawing
    PetImages/Dog/1043.jpg  # label error: a cat

Blank lines and lines starting with `#` are comments. `python -m smallvision.data.exclusions` appends audit rows.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from smallvision.errors import DataError

SEPARATOR = " # "


def read_exclusions(path: Path) -> dict[str, str]:
    """{image path: reason} from the exclusion file `path`; a line without a reason, or a path named twice, is a
    DataError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"exclusion file {path} (data.exclude) not found; create it (it may hold only comments)")
    found: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        image, sep, reason = text.partition(SEPARATOR)
        image, reason = image.strip(), reason.strip()
        if not sep or not image or not reason:
            raise DataError(f"{path} line {number}: expected '<image path> # <reason>', got {text!r}")
        if image in found:
            raise DataError(f"{path} line {number}: {image} is excluded twice")
        found[image] = reason
    return found


def check_exclusions(exclude: Mapping[str, str], candidates: Iterable[tuple[str, str]], source: str) -> None:
    """Every excluded path must be an image file found under the raw folder, and no class may lose all its
    images; `candidates` are (path, class) pairs, `source` names the file in the error."""
    by_class: dict[str, list[str]] = {}
    for image, label in candidates:
        by_class.setdefault(label, []).append(image)
    known = {image for images in by_class.values() for image in images}
    missing = sorted(set(exclude) - known)
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DataError(
            f"{source} (data.exclude) names {len(missing)} image(s) not under the raw folder: "
            f"{', '.join(missing[:3])}{more}; fix or remove those lines"
        )
    for label, images in by_class.items():
        if all(image in exclude for image in images):
            raise DataError(f"{source} (data.exclude) excludes every image of class '{label}'")


def append_rows(path: Path, rows: Sequence[Mapping[str, str]], reason: str) -> int:
    """Append audit CSV rows (their `path`; the reason: `reason`, then the label and suggestion) not yet in the
    file; returns how many were added."""
    present = read_exclusions(path) if Path(path).is_file() else {}
    lines = []
    for row in rows:
        if row["path"] in present:
            continue
        present[row["path"]] = reason
        lines.append(f"{row['path']}{SEPARATOR}{reason} (labelled {row['label']}, looks {row['suggested']})\n")
    with open(path, "a", encoding="utf-8") as fh:
        fh.writelines(lines)
    return len(lines)


USAGE = "usage: python -m smallvision.data.exclusions <audit csv> <exclusion file> <reason> <row number>..."


def main(argv: Sequence[str]) -> int:
    """python -m smallvision.data.exclusions <audit csv> <exclusion file> <reason> <row number>...: append those
    rows (1 = the first row under the header) of an audit list to the exclusion file. Bad input stops it with one
    line on stderr and exit status 2 (`smallvision.entrypoints.refuse`)."""
    # here, not at the top: the split reads this module as a library, without the entry scripts' code and its imports
    from smallvision.entrypoints import refuse

    if len(argv) < 4:
        refuse(USAGE)
    audit_csv, target, reason, numbers = Path(argv[0]), Path(argv[1]), argv[2], argv[3:]
    try:
        with open(audit_csv, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as err:
        refuse(f"cannot read the audit list {audit_csv}: {err.strerror or err}")
    try:
        chosen = [rows[int(n) - 1] for n in numbers if int(n) > 0]
    except (ValueError, IndexError):
        chosen = []
    if len(chosen) != len(numbers):
        refuse(f"row numbers must be 1 to {len(rows)}, got {' '.join(numbers)}")
    if any("path" not in row or "label" not in row or "suggested" not in row for row in chosen):
        refuse(f"{audit_csv} is not an audit list (label_issues.csv, off_task.csv)")
    try:
        added = append_rows(target, chosen, reason)
    except (DataError, OSError) as err:
        refuse(str(err))
    print(f"{added} row(s) appended to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

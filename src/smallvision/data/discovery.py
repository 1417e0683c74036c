"""Find what a raw image tree holds: its layout, its classes and the candidate image files, and every other file
with the reason it is not used (nothing is dropped silently).

Layouts recognised under the raw folder (a chain of single wrapper folders is descended first):
`petimages` (PetImages/<Class>/...), `class_folders` (<Class>/... for any number of classes),
`kaggle` (cat.123.jpg names in one folder) and the pre-split layouts, each folder holding class folders:
`presplit` (train/ val|validation/ test/: the given split is kept), `presplit_train_val` (train/ and
val|validation/, no test/: the given val/ becomes the test split) and `presplit_train_test` (train/ and test/).
Without a given validation folder the split stage carves validation out of train/: choosing checkpoints on a
folder and then testing on that same folder would report a biased number.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from smallvision.data.images import IMAGE_EXTENSIONS, is_image_name
from smallvision.data.manifest import SPLITS
from smallvision.data.skipped import SKIPPED, read_skipped
from smallvision.errors import ConfigError, DataError
from smallvision.files import OUTPUT_MARKER

_SPLIT_FOLDERS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
_KAGGLE_NAME = re.compile(r"^(?P<label>[^\W\d_][\w-]*?)\.\d+\.[^.]+$")


@dataclass(frozen=True)
class Candidate:
    """An image file to validate. `path` is relative to the raw folder, POSIX separators."""

    path: str
    label: str
    split: str | None = None  # given by a pre-split layout


@dataclass(frozen=True)
class Dropped:
    path: str
    reason: str


@dataclass
class Discovery:
    layout: str
    classes: list[str]
    candidates: list[Candidate]
    dropped: list[Dropped]
    # pre-split layouts: split -> the folder (relative to the raw folder) its images come from; no "val" when
    # validation is to be carved out of train/
    folders: dict[str, str] = field(default_factory=dict)


def discover(raw_dir: Path, classes: Sequence[str] | None = None) -> Discovery:
    """Find the layout, the class list and the candidate images under `raw_dir`; list what is dropped and why.

    `classes`, when given, must name exactly the classes found (ConfigError otherwise) and fixes their order;
    otherwise the classes are sorted by name.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DataError(
            f"images folder {raw_dir} does not exist; run the download stage first (python pipelines/download.py)"
        )
    images, dropped = _scan(raw_dir)
    dropped += [Dropped(entry.path, entry.reason) for entry in read_skipped(raw_dir)]  # what download left out
    if not images:
        raise DataError(f"no image files ({' '.join(sorted(IMAGE_EXTENSIONS))}) found under {raw_dir}")
    layout, candidates, more_dropped, folders = _assign_labels(raw_dir, [tuple(p.split("/")) for p in images])
    dropped += more_dropped
    found = sorted({c.label for c in candidates})
    order = _check_classes(classes, found, raw_dir, layout)
    return Discovery(layout, order, candidates, sorted(dropped, key=lambda d: d.path), folders)


def _scan(raw_dir: Path) -> tuple[list[str], list[Dropped]]:
    """Every file under raw_dir: image-named regular files, and the rest as dropped with a reason."""
    root = Path(os.path.abspath(raw_dir))
    root_real = root.resolve()
    images: list[str] = []
    dropped: list[Dropped] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel_dir = here.relative_to(root)
        kept = []
        for name in sorted(dirnames):
            full, rel = here / name, _printable((rel_dir / name).as_posix())
            if name.startswith("."):
                count = sum(len(files) for _, _, files in os.walk(full))
                dropped.append(Dropped(rel + "/", f"hidden folder ({count} files)"))
            elif full.is_symlink():
                inside = _is_inside(full, root_real)
                reason = "symlinked folder (not followed)" if inside else "symlink pointing outside the data tree"
                dropped.append(Dropped(rel + "/", reason))
            elif not _is_utf8(name):
                count = sum(len(files) for _, _, files in os.walk(full))
                dropped.append(Dropped(rel + "/", f"folder name is not valid UTF-8 ({count} files)"))
            else:
                kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            full, rel = here / name, (rel_dir / name).as_posix()
            if rel == OUTPUT_MARKER:  # the download stage's mark on its folder
                continue
            if rel == SKIPPED:  # the download stage's list of what it left out, read by discover()
                continue
            reason = _file_problem(full, name, root_real) or (
                None if _is_utf8(name) else "file name is not valid UTF-8"
            )
            if reason:
                dropped.append(Dropped(_printable(rel), reason))
            else:
                images.append(rel)
    return images, dropped


def _is_utf8(name: str) -> bool:
    """Names with undecodable bytes (kept by Python as surrogates) cannot be written to the UTF-8 manifest."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _printable(path: str) -> str:
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _file_problem(full: Path, name: str, root_real: Path) -> str | None:
    if name.startswith("."):
        return "hidden file"
    if full.is_symlink():
        if not full.exists():
            return "broken symlink"
        if not _is_inside(full, root_real):
            return "symlink pointing outside the data tree"
    if not full.is_file():
        return "not a regular file"
    if not is_image_name(name):
        suffix = Path(name).suffix.lower()
        return f"not an image (extension {suffix})" if suffix else "not an image (no extension)"
    return None


def _is_inside(path: Path, root_real: Path) -> bool:
    target = path.resolve()
    return target == root_real or root_real in target.parents


def _assign_labels(
    raw_dir: Path, images: list[tuple[str, ...]]
) -> tuple[str, list[Candidate], list[Dropped], dict[str, str]]:
    prefix: tuple[str, ...] = ()
    while True:  # descend wrapper folders: no images of their own and a single sub-folder
        direct, children = _level(images, prefix)
        if direct or len(children) != 1:
            break
        _refuse_empty_split_folders(raw_dir, prefix, children)
        prefix += (children[0],)
    depth = len(prefix)
    base = "/".join(prefix) or "."
    split_dirs = {c: _SPLIT_FOLDERS[c.lower()] for c in children if c.lower() in _SPLIT_FOLDERS}
    if split_dirs:
        _refuse_empty_split_folders(raw_dir, prefix, children)
    if len(split_dirs) > 1:
        return _presplit(images, prefix, _split_of_folder(raw_dir / base, split_dirs))
    if children:
        layout = "petimages" if prefix and prefix[-1] == "PetImages" else "class_folders"
        candidates, dropped = [], []
        for parts in images:
            path = "/".join(parts)
            if len(parts) == depth + 1:
                dropped.append(Dropped(path, "not inside a class folder"))
            else:
                candidates.append(Candidate(path, parts[depth]))
        return layout, candidates, dropped, {}
    return (*_kaggle(raw_dir / base, images), {})


def _refuse_empty_split_folders(raw_dir: Path, prefix: tuple[str, ...], holding: list[str]) -> None:
    """Refuse (DataError) a pre-split tree with a split folder (train/, val/, validation/, test/) that holds no
    images beside one that does (`holding`: the sub-folders of `prefix` with images): ignored, it would quietly
    turn the tree into another layout (an empty val/ beside train/ made a 60/20/20 split of train/ alone)."""
    if not any(c.lower() in _SPLIT_FOLDERS for c in holding):
        return
    folder = raw_dir.joinpath(*prefix)
    empty = sorted(
        p.name
        for p in folder.iterdir()
        if p.name.lower() in _SPLIT_FOLDERS and p.name not in holding and p.is_dir() and not p.is_symlink()
    )
    if empty:
        raise DataError(
            f"{folder} looks pre-split, but {', '.join(f'{name}/' for name in empty)} holds no images: put its "
            "images there (one folder per class) or remove the folder"
        )


def _split_of_folder(where: Path, split_dirs: dict[str, str]) -> dict[str, str]:
    """Which split each of the pre-split folders fills. train/ + val/ (no test/): the given validation folder
    becomes the test split, and the split stage carves validation out of train/; train/ + test/: the same."""
    given = sorted(split_dirs.values(), key=SPLITS.index)
    twice = [
        f"{'/ and '.join(f for f in sorted(split_dirs) if split_dirs[f] == s)}/" for s in SPLITS if given.count(s) > 1
    ]
    if twice or "train" not in given:
        raise DataError(
            f"{where} looks pre-split ({', '.join(sorted(split_dirs))}) but needs one train/ folder and one or "
            "both of val/ (or validation/) and test/, each holding one folder per class; "
            + (f"it has both {', '.join(twice)}. " if twice else "it has no train/. ")
            + "Rename or merge the folders, or put everything into one folder per class"
        )
    if given == ["train", "val"]:
        return {folder: "test" if split == "val" else split for folder, split in split_dirs.items()}
    return dict(split_dirs)


def _level(images: list[tuple[str, ...]], prefix: tuple[str, ...]) -> tuple[list[tuple[str, ...]], list[str]]:
    """Images directly in `prefix`, and the sorted names of its sub-folders that hold images."""
    n = len(prefix)
    direct = [p for p in images if len(p) == n + 1]
    children = sorted({p[n] for p in images if len(p) > n + 1})
    return direct, children


def _presplit(
    images, prefix: tuple[str, ...], split_of: dict[str, str]
) -> tuple[str, list[Candidate], list[Dropped], dict[str, str]]:
    depth = len(prefix)
    candidates, dropped = [], []
    for parts in images:
        path = "/".join(parts)
        split = split_of.get(parts[depth]) if len(parts) > depth + 1 else None
        if split is None:
            dropped.append(Dropped(path, f"outside the {', '.join(f'{f}/' for f in sorted(split_of))} folders"))
        elif len(parts) == depth + 2:
            dropped.append(Dropped(path, "not inside a class folder"))
        else:
            candidates.append(Candidate(path, parts[depth + 1], split))
    folders = {split: "/".join((*prefix, folder)) for folder, split in split_of.items()}
    given = sorted({_SPLIT_FOLDERS[folder.lower()] for folder in split_of}, key=SPLITS.index)
    layout = "presplit" if len(given) == 3 else "presplit_" + "_".join(given)
    return layout, candidates, dropped, dict(sorted(folders.items(), key=lambda kv: SPLITS.index(kv[0])))


def _kaggle(folder: Path, images) -> tuple[str, list[Candidate], list[Dropped]]:
    candidates, dropped = [], []
    for parts in images:
        path = "/".join(parts)
        match = _KAGGLE_NAME.match(parts[-1])
        if match:
            candidates.append(Candidate(path, match["label"]))
        else:
            dropped.append(Dropped(path, "name does not give a class (expected <class>.<number>.<ext>)"))
    if not candidates:
        raise DataError(
            f"the images in {folder} are all in one folder and their names do not give a class; "
            "put them in one folder per class (<class>/<image>) or name them like cat.1.jpg"
        )
    return "kaggle", candidates, dropped


def _check_classes(classes: Sequence[str] | None, found: list[str], raw_dir: Path, layout: str) -> list[str]:
    if classes is not None:
        order = [str(c) for c in classes]
        if set(order) != set(found):
            missing = sorted(set(order) - set(found))
            extra = sorted(set(found) - set(order))
            raise ConfigError(
                f"data.classes={order} does not match the classes found in {raw_dir} (layout {layout}): {found}; "
                f"not found: {missing}, found but not listed: {extra}. Fix data.classes or set data.classes=null "
                "to use the folders found"
            )
    else:
        order = found
    if len(order) < 2:
        raise DataError(f"found only the class {order} in {raw_dir} (layout {layout}); a classifier needs two or more")
    return order

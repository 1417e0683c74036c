"""From a raw image tree to a validated, de-duplicated, stratified train/val/test manifest.

Outputs, in `out_dir` (written together, atomically): `manifest.csv` (see `smallvision.data.manifest`) and
`split_report.json`: layout found, class list, counts per split and class, every dropped file with its reason
(nothing is dropped silently), and the number of duplicates.

The layouts it reads are those of `smallvision.data.discovery`; a pre-split layout keeps its given split and
`split` is ignored, except that without a given validation folder `split.val` of each class is carved out of
train/ (the report's `split_from` says which folder became which split).
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from smallvision.data.discovery import Discovery, Dropped, discover
from smallvision.data.exclusions import check_exclusions
from smallvision.data.images import BadImageError, ImageLimits, decode_rgb, read_checked
from smallvision.data.manifest import MANIFEST, REPORT, SPLITS, write_manifest
from smallvision.errors import ConfigError, DataError
from smallvision.files import check_output_folder, staging_dir
from smallvision.schema import REST, Split

_SHORTAGE_FIX = "Lower data.split.* or use fractions (e.g. data.split.train=0.6 data.split.val=0.2 data.split.test=0.2)"


@dataclass
class SplitReport:
    layout: str
    raw_dir: str  # relative to the prepared folder
    seed: int
    classes: list[str]
    counts: dict[str, dict[str, int]]
    unused: dict[str, int]
    images_found: int
    dropped: list[Dropped] = field(default_factory=list)
    duplicates: int = 0
    split_from: dict[str, str] = field(default_factory=dict)  # split -> where its images came from
    excluded: int = 0  # images the exclusion list left out (listed in `dropped` with its reasons)

    @property
    def total(self) -> dict[str, int]:
        return {split: sum(per_class.values()) for split, per_class in self.counts.items()}

    def as_dict(self) -> dict:
        return {
            "layout": self.layout,
            "split_from": self.split_from,
            "raw_dir": self.raw_dir,
            "seed": self.seed,
            "classes": self.classes,
            "counts": self.counts,
            "total": self.total,
            "unused": self.unused,
            "images_found": self.images_found,
            "valid": sum(self.total.values()) + sum(self.unused.values()),
            "dropped_count": len(self.dropped),
            "duplicates": self.duplicates,
            "excluded": self.excluded,
            "dropped": [{"path": d.path, "reason": d.reason} for d in self.dropped],
        }


# --------------------------------------------------------------------------- validation


def validate_images(
    files: Sequence[Path],
    *,
    workers: int | None,
    limits: ImageLimits,
    progress: bool = True,
) -> list[tuple[str | None, str | None]]:
    """Fully decode every file in a process pool (`workers` processes; None: every core): (sha256 of the bytes,
    None) or (None, reason) per file, in order. A file is read whole only after its size and header pass `limits`."""
    workers = available_cores() if workers is None else workers
    jobs = [(str(f), limits) for f in files]
    bar = {"total": len(jobs), "desc": "validate images", "unit": "img", "disable": not progress}
    if workers == 1 or len(jobs) < 2:
        return list(tqdm(map(_check_image, jobs), **bar))
    chunk = max(1, min(64, len(jobs) // (workers * 8)))
    # forkserver: workers never inherit the parent's threads (tqdm, torch) the way fork would
    context = multiprocessing.get_context(
        "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    )
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            return list(tqdm(pool.map(_check_image, jobs, chunksize=chunk), **bar))
    except BrokenProcessPool as err:  # a decoder crashed hard (or ran out of memory) on some file
        raise DataError(
            f"an image validation process died ({err}); rerun with data.workers=1 to see which file causes it"
        ) from None


def _check_image(job: tuple[str, ImageLimits]) -> tuple[str | None, str | None]:
    path, limits = job
    try:
        data = read_checked(path, limits)
        decode_rgb(data, limits)
    except BadImageError as err:
        return None, err.reason
    except Exception as err:  # noqa: BLE001 - one odd file must never stop the split
        return None, f"does not decode ({type(err).__name__})"
    return hashlib.sha256(data).hexdigest(), None


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- split


def split_sizes(amounts: Mapping[str, int | float | str], available: int) -> dict[str, int]:
    """Images per split for a class of `available` images (fractions rounded on the running total; test "rest":
    what train and val leave, never below 0)."""
    given = [name for name in SPLITS if amounts[name] != REST]
    if any(isinstance(v, float) and v > 0 for v in amounts.values()):
        sizes, cumulative, taken = {}, 0.0, 0
        for name in given:
            cumulative += float(amounts[name])
            upto = min(available, math.floor(cumulative * available + 0.5))
            sizes[name], taken = upto - taken, upto
    else:
        sizes = {name: int(amounts[name]) for name in given}
    if amounts["test"] == REST:
        sizes["test"] = max(0, available - sizes["train"] - sizes["val"])
    return sizes


def _stratify(
    kept: dict[str, list[tuple[str, str]]],
    classes: list[str],
    amounts: Mapping[str, int | float | str],
    seed: int,
    drops: Mapping[str, Counter],
) -> tuple[dict[str, str], dict[str, int]]:
    """Assign each (path, sha256) of each class to a split. Returns {path: split} and the unused count per class.

    The order within a class is by sha256(seed, class, content hash): seeded, independent of file names
    and of any random-number generator's implementation. `drops` (reason counts per class) explains a shortage.
    """
    problems = []
    for label in classes:
        problem = _shortage(label, len(kept.get(label, [])), amounts)
        if problem:
            why = ", ".join(f"{n} {reason}" for reason, n in sorted(drops.get(label, Counter()).items()))
            problems.append(problem + (f" (dropped: {why})" if why else ""))
    if problems:
        raise DataError(f"too few valid images: {'; '.join(problems)}. {_SHORTAGE_FIX}")
    assignment, unused = {}, {}
    for label in classes:
        items = sorted(kept[label], key=lambda item: hashlib.sha256(f"{seed}:{label}:{item[1]}".encode()).hexdigest())
        start = 0
        for name, n in split_sizes(amounts, len(items)).items():
            for path, _ in items[start : start + n]:
                assignment[path] = name
            start += n
        unused[label] = len(items) - start
    return assignment, unused


def _shortage(
    label: str, available: int, amounts: Mapping[str, int | float | str], what: str = "valid images"
) -> str | None:
    sizes = split_sizes(amounts, available)
    need = sum(sizes.values())
    if need > available:
        detail = " + ".join(f"{name} {sizes[name]}" for name in SPLITS)
        return f"class '{label}' has {available} {what} but the split needs {need} ({detail})"
    empty = [name for name in SPLITS if amounts[name] and not sizes[name]]
    if empty:
        return f"class '{label}' has {available} {what}, too few to put any in {', '.join(empty)}"
    return None


# --------------------------------------------------------------------------- the stage


def prepare_split(
    raw_dir: Path,
    out_dir: Path,
    *,
    split: Split,
    seed: int,
    classes: Sequence[str] | None,
    workers: int | None,
    limits: ImageLimits,
    progress: bool = True,
    exclude: Mapping[str, str] | None = None,
    exclude_source: str = "the exclusion list",
) -> SplitReport:
    """Validate, de-duplicate and split the images under `raw_dir` (`classes`: the classes expected, None: the
    folders found; `workers`: processes, None: every core; `exclude`: {path: reason} of images left out, read
    from `exclude_source`); write manifest and report to `out_dir`."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    _check_folders(raw_dir, out_dir)
    amounts = split.amounts()
    found = discover(raw_dir, classes)
    # the amounts the layout uses: a pre-split tree keeps its folders, and carves val out of train/ when not given
    split.check_used(SPLITS if not found.folders else [] if "val" in found.folders else ["val"])
    images_found = len(found.candidates)
    exclude = dict(exclude or {})
    if exclude:
        check_exclusions(exclude, ((c.path, c.label) for c in found.candidates), exclude_source)
    if not found.folders:  # fail before decoding thousands of images when even the files are too few
        for label in found.classes:
            count = sum(c.label == label for c in found.candidates)
            problem = _shortage(label, count, amounts, "image files (not yet decoded)")
            if problem:
                raise DataError(f"too few images: {problem}. {_SHORTAGE_FIX}")

    results = validate_images(
        [raw_dir / c.path for c in found.candidates], workers=workers, limits=limits, progress=progress
    )
    kept, given_split, drops, dropped = _keep_valid(found, results)
    dropped = [d for d in dropped if d.path not in exclude] + [
        Dropped(image, f"excluded: {reason}") for image, reason in exclude.items()
    ]
    assignment, unused = _assign(found, kept, given_split, amounts, seed, drops)
    if exclude:
        kept = _leave_out(kept, assignment, exclude, exclude_source)
    rows = _manifest_rows(kept, assignment, found.classes)
    counts = {name: {label: 0 for label in found.classes} for name in SPLITS}
    for _, label, name, _ in rows:
        counts[name][label] += 1
    report = SplitReport(
        layout=found.layout,
        raw_dir=Path(os.path.relpath(os.path.abspath(raw_dir), os.path.abspath(out_dir))).as_posix(),
        seed=int(seed),
        classes=found.classes,
        counts=counts,
        unused=unused,
        images_found=images_found,
        dropped=sorted(dropped, key=lambda d: d.path),
        duplicates=sum(counter["duplicate"] for counter in drops.values()),
        split_from=_split_from(found.folders, amounts, seed),
        excluded=len(exclude),
    )
    with staging_dir(out_dir, "split") as tmp:
        write_manifest(tmp / MANIFEST, rows)
        (tmp / REPORT).write_text(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report


def _assign(
    found: Discovery,
    kept: dict[str, list[tuple[str, str]]],
    given_split: Mapping[str, str | None],
    amounts: Mapping[str, int | float | str],
    seed: int,
    drops: dict[str, Counter],
) -> tuple[dict[str, str], dict[str, int]]:
    """{image: split} of the kept images, and the images per class left unused. A pre-split layout: its folders
    decide, and validation comes out of train/ when not given; else a stratified draw with `seed`."""
    if not found.folders:
        return _stratify(kept, found.classes, amounts, seed, drops)
    assignment = dict(given_split)
    if "val" not in found.folders:
        _check_in_train(kept, given_split, found.folders)  # before carving: name the class, not data.split.val
        assignment.update(_carve_validation(kept, given_split, amounts["val"], seed, found.folders["train"]))
    _check_presplit(kept, assignment, found.classes, found.folders)
    return assignment, {label: 0 for label in found.classes}


def _manifest_rows(
    kept: dict[str, list[tuple[str, str]]], assignment: dict[str, str], classes: list[str]
) -> list[tuple[str, str, str, str]]:
    """(image, class, split, digest) of each assigned image, by split, then class, then path."""
    class_index = {label: i for i, label in enumerate(classes)}
    return sorted(
        (
            (path, label, assignment[path], digest)
            for label, items in kept.items()
            for path, digest in items
            if path in assignment
        ),
        key=lambda row: (SPLITS.index(row[2]), class_index[row[1]], row[0]),
    )


def _check_folders(raw_dir: Path, out_dir: Path) -> None:
    check_output_folder(out_dir, "split", "paths.prepared")
    raw, out = raw_dir.resolve(), out_dir.resolve()
    if raw == out or raw in out.parents or out in raw.parents:  # the prepared folder is replaced wholesale
        raise ConfigError(
            f"paths.prepared ({out_dir}) and paths.raw ({raw_dir}) overlap: writing the manifest would replace the "
            "images; give them separate folders"
        )


def _keep_valid(
    found: Discovery, results: Sequence[tuple[str | None, str | None]]
) -> tuple[dict[str, list[tuple[str, str]]], dict[str, str | None], dict[str, Counter], list[Dropped]]:
    """The valid, first-seen images per class as (path, digest), each one's given split folder, the reasons
    dropped per class, and every dropped file (discovery's too) with its reason."""
    dropped = list(found.dropped)
    first_by_hash: dict[str, str] = {}
    kept: dict[str, list[tuple[str, str]]] = {label: [] for label in found.classes}
    given_split: dict[str, str | None] = {}
    drops: dict[str, Counter] = {label: Counter() for label in found.classes}
    for candidate, (digest, reason) in sorted(zip(found.candidates, results), key=lambda pair: pair[0].path):
        if reason is not None:
            dropped.append(Dropped(candidate.path, reason))
            drops[candidate.label][reason] += 1
        elif digest in first_by_hash:
            dropped.append(Dropped(candidate.path, f"duplicate of {first_by_hash[digest]}"))
            drops[candidate.label]["duplicate"] += 1
        else:
            first_by_hash[digest] = candidate.path
            kept[candidate.label].append((candidate.path, digest))
            given_split[candidate.path] = candidate.split
    return kept, given_split, drops, dropped


def _leave_out(
    kept: dict[str, list[tuple[str, str]]], assignment: Mapping[str, str], exclude: Mapping[str, str], source: str
) -> dict[str, list[tuple[str, str]]]:
    """`kept` without the excluded images. They were split with the others, so every other image keeps the
    split it has without the list, and a rerun with the list differs from one without it by those images only
    (and the exact copies the split dropped as duplicates of one, which it kept as the first by path). DataError
    when a class is left with no image in a split."""
    left = {label: [item for item in items if item[0] not in exclude] for label, items in kept.items()}
    used = set(assignment.values())
    for label, items in left.items():
        empty = sorted(used - {assignment[path] for path, _ in items if path in assignment}, key=SPLITS.index)
        if empty:
            raise DataError(
                f"class '{label}' has no images left in {', '.join(empty)} once {source} leaves its images out: "
                "take rows out of the list or give that split more images"
            )
    return left


def _check_in_train(
    kept: dict[str, list[tuple[str, str]]], given_split: Mapping[str, str | None], folders: Mapping[str, str]
) -> None:
    """Refuse (DataError) a class of a pre-split tree that has no valid image in its train/ folder."""
    for label, items in kept.items():
        given = {given_split[path] for path, _ in items}
        if "train" not in given:
            where = ", ".join(f"{folders[name]}/" for name in SPLITS if name in given)
            raise DataError(
                f"class '{label}' has no valid images in {folders['train']}/ (train), only in {where}: add its "
                f"training images to {folders['train']}/{label}/ or remove the class"
            )


def _check_presplit(
    kept: dict[str, list[tuple[str, str]]], assignment: dict[str, str], classes: list[str], folders: Mapping[str, str]
) -> None:
    for label in classes:
        present = {assignment[path] for path, _ in kept[label]}
        missing = [f"{folders[name]}/ ({name})" for name in SPLITS if name not in present]
        if missing:
            raise DataError(f"class '{label}' has no valid images in {', '.join(missing)}")


def _carve_validation(
    kept: dict[str, list[tuple[str, str]]],
    given_split: Mapping[str, str | None],
    val: float,  # a count per class (an int) or a fraction of train/
    seed: int,
    train_folder: str,
) -> dict[str, str]:
    """{path: "val"} for `val` images per class (a count, or a fraction of the class's train/ images) taken out of
    train/, in the seeded content-hash order `_stratify` uses; a clear error when a class cannot spare them."""
    if not val:
        raise ConfigError(
            f"data.split.val={val!r}: {train_folder}/ comes without a validation folder, so validation images are "
            "carved out of it (the given other folder is the test split); set data.split.val to a count per class "
            "or a fraction of train/, e.g. data.split.val=0.2"
        )
    carved, problems = {}, []
    for label, items in kept.items():
        pool = sorted(
            (item for item in items if given_split[item[0]] == "train"),
            key=lambda item: hashlib.sha256(f"{seed}:{label}:{item[1]}".encode()).hexdigest(),
        )
        n = split_sizes({"train": 0, "val": val, "test": 0}, len(pool))["val"]
        if n == 0:
            problems.append(f"class '{label}': {val!r} of its {len(pool)} images is none; raise data.split.val")
        elif n >= len(pool):
            problems.append(
                f"class '{label}' has {len(pool)} valid images, none left to train on; lower data.split.val"
            )
        carved.update((path, "val") for path, _ in pool[:n])
    if problems:
        raise DataError(
            f"cannot carve validation out of {train_folder}/ with data.split.val={val!r} (a count per class or a "
            f"fraction of train/): {'; '.join(problems)}"
        )
    return carved


def _split_from(folders: Mapping[str, str], amounts: Mapping[str, int | float], seed: int) -> dict[str, str]:
    """Where each split's images came from, for the report."""
    if not folders:
        return {name: f"data.split.{name}={amounts[name]!r} of each class, stratified, seed {seed}" for name in SPLITS}
    if "val" in folders:
        return {name: f"{folders[name]}/" for name in SPLITS}
    return {
        "train": f"{folders['train']}/, less the validation images",
        "val": f"{folders['train']}/: data.split.val={amounts['val']!r} of each class, stratified, seed {seed}",
        "test": f"{folders['test']}/",
    }

"""Decode once: every image of the manifest, resized, in one uint8 array on disk (memory-mapped when read).

The array is keyed by the manifest's content and the resize geometry (size, squash or crop, crop fraction,
interpolation), so it is rebuilt exactly when either changes. Rows follow the manifest's order, so row i is
record i. Before a build, the disk must have room for the whole array; a build that fails removes its temporary
file, and one killed outright has its file removed by the next.
"""

from __future__ import annotations

import os
import re
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from smallvision.data.images import ImageLimits, Resize, as_resize, load_resized
from smallvision.errors import DataError
from smallvision.files import atomic_write

_HEADER = 4096  # bytes: room for the .npy header


def _load(args: tuple[str, Resize, ImageLimits]) -> np.ndarray:
    path, resize, limits = args
    return load_resized(Path(path), resize, limits)


def image_array(
    files: list[Path],
    size: int | Resize,
    cache_dir: Path,
    key: str,
    workers: int | None,
    progress: bool,
    limits: ImageLimits,
) -> np.ndarray:
    """The (N, size, size, 3) uint8 array of `files`, built once in `cache_dir` and memory-mapped afterwards.

    `size` is a `Resize` (a plain size: the book's squash, bilinear).
    `key` identifies the file list (the manifest digest); `limits` are data.max_image_pixels and
    data.max_image_bytes, the limits the split stage accepted these files under. The array is written
    atomically (`files.atomic_write`), so an interrupted build never leaves a file that looks complete.
    """
    resize = as_resize(size)
    target = Path(cache_dir) / f"images-{key[:16]}-{resize.tag}.npy"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_orphans(target)
        _check_room(target.parent, len(files), resize.size)
        atomic_write(target, lambda tmp: _decode_into(tmp, files, resize, workers, progress, limits))
    return np.load(target, mmap_mode="r")


def _check_room(folder: Path, count: int, size: int) -> None:
    need, free = count * size * size * 3 + _HEADER, shutil.disk_usage(folder).free
    if need > free:
        raise DataError(
            f"the {count} images decoded at {size} px take {need / 1e9:,.1f} GB, but {folder} has "
            f"{free / 1e9:,.1f} GB free: free some space, point paths.cache elsewhere, or lower the image size"
        )


def _remove_orphans(target: Path) -> None:
    """Temporary files of builds killed outright (atomic_write's `.<stem>.<pid>.tmp.npy`, pid no longer running)."""
    for tmp in target.parent.glob(f".{target.stem}.*.tmp{target.suffix}"):
        match = re.fullmatch(rf"\.{re.escape(target.stem)}\.(\d+)\.tmp{re.escape(target.suffix)}", tmp.name)
        if match and not _running(int(match[1])):
            tmp.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _decode_into(
    path: Path,
    files: list[Path],
    resize: Resize,
    workers: int | None,
    progress: bool,
    limits: ImageLimits,
) -> None:
    size = resize.size
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(files), size, size, 3))
    workers = workers or os.cpu_count() or 1
    jobs = [(str(f), resize, limits) for f in files]
    bar = tqdm(total=len(files), desc=f"decoding images at {resize.tag} (once)", disable=not progress, unit="img")
    if workers > 1 and len(files) > 64:
        with ProcessPoolExecutor(workers) as pool:
            for i, img in enumerate(pool.map(_load, jobs, chunksize=32)):
                out[i] = img
                bar.update()
    else:
        for i, job in enumerate(jobs):
            out[i] = _load(job)
            bar.update()
    bar.close()
    out.flush()
    del out

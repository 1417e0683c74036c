"""Files and folders written so that no reader, and no later run, ever sees half of one; and what kind of file a
path is, when it is neither a regular file nor a folder (reading a FIFO blocks, reading a device never ends)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """`write(tmp)` to a hidden temporary file beside `path`, then rename it onto `path` in one step.

    The temporary name keeps the suffix, so writers that pick a format by it (matplotlib) still work. When `write`
    fails (or is interrupted), the temporary file is removed and the error goes on.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


_SPECIAL_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def special_file_kind(path: Path) -> str | None:
    """What `path` (links followed) is when it exists and is neither a regular file nor a folder, else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return _SPECIAL_KINDS.get(stat.S_IFMT(mode), "not a regular file")


@contextmanager
def staging_dir(target: Path) -> Iterator[Path]:
    """Yield an empty hidden sibling of `target`; on success it replaces `target`, on failure it is removed.

    A run killed before the end leaves only a `.<name>.*.partial` folder (removed by the next run),
    never a `target` that looks complete.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*.partial"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _replace_dir(tmp, target)


def _replace_dir(new: Path, target: Path) -> None:
    old = None
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

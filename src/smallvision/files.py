"""Files and folders written so that no reader, and no later run, ever sees half of one; what kind of file a path
is, when it is neither a regular file nor a folder (reading a FIFO blocks, reading a device never ends); and which
folders a stage may replace: only the ones it made itself, which carry its marker file (`OUTPUT_MARKER`)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from smallvision.errors import ConfigError

# Written by a stage into every folder it replaces wholesale, with the stage's name: the proof, on its next run,
# that the folder holds nothing but what the stage made.
OUTPUT_MARKER = ".smallvision-output"


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


def nearest_existing(path: Path) -> Path:
    """`path` itself when it exists, else its nearest ancestor that does (where writing it starts)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(path: Path, where: str) -> None:
    """Refuse (ConfigError) a folder `path` that this process may not write in: it, or its nearest existing ancestor
    when it is not there yet, is read-only (permissions or a read-only mount). `where` names the setting. Checked
    before a stage's work, so that its results are not lost at the end."""
    folder = nearest_existing(path)
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{where} cannot be written: the folder {folder} is read-only; give a writable path")


def check_output_folder(path: Path, owner: str, key: str | None = None, given: str | None = None) -> None:
    """Refuse (ConfigError) an output folder that stage `owner` may not replace: anything that exists and is not
    an empty folder or one `owner` made (its marker names `owner`). A file, a link or a special file is refused too:
    replacing it would lose it, and opening a FIFO to clean it up would block. `key` names the setting (paths.x),
    `given` its value as written."""
    path = Path(path)
    where = f"{key}={given or path}" if key else str(path)
    if not path.exists() and not path.is_symlink():
        return
    kind = special_file_kind(path)
    if path.is_symlink() or kind or not path.is_dir():
        what = "a link" if path.is_symlink() else kind or "a file"
        raise ConfigError(f"{where} is {what}, not a folder: the {owner} stage writes a folder there; give a new path")
    marker = path / OUTPUT_MARKER
    if marker.is_file() and not marker.is_symlink():
        with open(marker, "rb") as fh:
            made_by = fh.read(100).decode("utf-8", "replace").strip()  # a stage's name, not a file to load whole
        if made_by == owner:
            return
        raise ConfigError(
            f"{where} is the {made_by} stage's output folder; the {owner} stage would replace it: give another path"
        )
    if any(path.iterdir()):
        raise ConfigError(
            f"{where} is a folder the {owner} stage did not make (it has files and no {OUTPUT_MARKER}); the stage "
            "replaces its output folder wholesale, so give a new or empty folder"
        )


def check_output_place(root: Path, given: str, key: str, owner: str, claimed: Iterable[tuple[str, str]]) -> None:
    """Refuse (ConfigError) the output folder `given` (setting `key`, relative to the project folder `root` unless
    absolute) of stage `owner` when it is `root` or above it, when it is, holds or lies inside one of `claimed`
    (what, path relative to `root`): other stages' outputs and the project's own files, which replacing the folder
    would delete; or when `check_output_folder` refuses it."""
    root = Path(os.path.normpath(root))
    out = Path(os.path.normpath(root / given))
    if out == root or out in root.parents:
        raise ConfigError(
            f"{key}={given} is the project folder or holds it; the {owner} stage needs a folder of its own"
        )
    for what, path in claimed:
        other = Path(os.path.normpath(root / path))
        if out == other or out in other.parents or other in out.parents:
            raise ConfigError(
                f"{key}={given} overlaps {what} {path}: the {owner} stage replaces its output folder wholesale; "
                "give it a folder of its own"
            )
    check_output_folder(out, owner, key, given)
    check_writable(out.parent, f"{key}={given}")  # where the stage makes its new folder and swaps it in


@contextmanager
def staging_dir(target: Path, owner: str) -> Iterator[Path]:
    """Yield an empty hidden sibling of `target`; on success it replaces `target`, on failure it is removed.

    `target` must be absent, empty or made by stage `owner` (`check_output_folder`, checked first); the new one
    carries `owner`'s marker. A run killed before the end leaves only a `.<name>.*.partial` folder (removed by the
    next run), never a `target` that looks complete.
    """
    target = Path(target)
    check_output_folder(target, owner)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*.partial"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
        check_output_folder(target, owner)  # nothing else took the place meanwhile
        (tmp / OUTPUT_MARKER).write_text(f"{owner}\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _replace_dir(tmp, target)


def _replace_dir(new: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

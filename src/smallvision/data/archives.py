"""Extract a zip or tar archive safely.

Extraction refuses, before writing anything, archives with absolute paths, `..` components, link entries (all
symlinks and hard links, wherever they point: image datasets have no need for them), device/special files, or a
declared total size above `max_extract_bytes` (archive bombs). The entries land in a staging folder that replaces
the target only when complete.
"""

from __future__ import annotations

import lzma
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path

from tqdm.auto import tqdm

from smallvision.data.download import CHUNK
from smallvision.errors import DataError
from smallvision.files import staging_dir


def extract_archive(archive: Path, raw_dir: Path, *, max_extract_bytes: float, progress: bool = True) -> None:
    """Safely extract a zip or tar archive (detected by content) so that its entries end up in `raw_dir`."""
    archive = Path(archive)
    if zipfile.is_zipfile(archive):
        extract = _extract_zip
    elif _is_tar(archive):
        extract = _extract_tar
    else:
        raise DataError(
            f"{archive} is not a readable zip or tar archive (corrupt or incomplete?); "
            "check the file, download it again, or point data.source at a folder of images"
        )
    with staging_dir(raw_dir) as tmp:
        try:
            extract(archive, tmp, int(max_extract_bytes), progress)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as err:
            raise DataError(
                f"archive {archive} is corrupt or cannot be extracted ({err}); check the file or download it again"
            ) from None


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except (OSError, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError):
        return False


def _extract_zip(archive: Path, dest: Path, limit: int, progress: bool) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        plan = []
        for info in infos:
            mode = info.external_attr >> 16
            if info.create_system == 3 and mode:  # unix permissions are recorded
                _refuse_special(archive, info.filename, mode)
            plan.append((info, _safe_relative(archive, info.filename)))
        _check_declared_size(archive, sum(info.file_size for info in infos), limit)
        for info, parts in tqdm(plan, desc="extract", unit="file", disable=not progress):
            if not parts:
                continue
            target = dest.joinpath(*parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
            except (NotImplementedError, RuntimeError) as err:  # unsupported compression, encryption
                raise DataError(
                    f"cannot extract {info.filename!r} from {archive} ({err}); extract it yourself and set "
                    "data.source to the folder"
                ) from None


def _extract_tar(archive: Path, dest: Path, limit: int, progress: bool) -> None:
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()
        plan = []
        for member in members:
            if member.issym() or member.islnk():
                raise DataError(
                    f"archive {archive} contains a link entry {member.name!r} -> {member.linkname!r}; "
                    "archives with links are refused (nothing was extracted)"
                )
            if not (member.isfile() or member.isdir()):
                raise DataError(
                    f"archive {archive} contains a device or special file {member.name!r}; refused (nothing was extracted)"
                )
            plan.append((member, _safe_relative(archive, member.name)))
        _check_declared_size(archive, sum(m.size for m in members if m.isfile()), limit)
        for member, parts in tqdm(plan, desc="extract", unit="file", disable=not progress):
            if not parts:
                continue
            target = dest.joinpath(*parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(member)
            assert src is not None  # regular file
            with src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)


def _safe_relative(archive: Path, name: str) -> tuple[str, ...]:
    """The path components of an archive entry; refuses absolute paths and '..'."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise DataError(f"archive {archive} contains an absolute path {name!r}; refused (nothing was extracted)")
    parts = tuple(p for p in norm.split("/") if p not in ("", "."))
    if ".." in parts:
        raise DataError(
            f"archive {archive} contains a path leaving the target {name!r} ('..'); refused (nothing was extracted)"
        )
    return parts


def _refuse_special(archive: Path, name: str, mode: int) -> None:
    if stat.S_ISLNK(mode):
        raise DataError(
            f"archive {archive} contains a link entry {name!r}; archives with links are refused (nothing was extracted)"
        )
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: only permissions recorded
        raise DataError(
            f"archive {archive} contains a device or special file {name!r}; refused (nothing was extracted)"
        )


def _check_declared_size(archive: Path, total: int, limit: int) -> None:
    if total > limit:
        raise DataError(
            f"archive {archive} declares {total:,} bytes of content, more than data.max_extract_bytes={limit:,} "
            "(archive bomb?); nothing was extracted. Raise data.max_extract_bytes if the archive is genuine"
        )

"""Extract a zip or tar archive safely.

Extraction refuses, before writing anything, archives with absolute paths, `..` components, link entries (all
symlinks and hard links, wherever they point: image datasets have no need for them), device/special files, or a
declared total size above `max_extract_bytes` (archive bombs), or a tar extended header (PAX, GNU long name) longer than
`max_header_bytes` (tarfile reads each one whole into memory). The entries land in a staging folder that replaces
the target only when complete.

An entry that cannot land on a file of its own is not extracted and is listed with the reason
(`smallvision.data.skipped`, so the split report shows it): one that names the same file as an earlier entry
(`cat/a.jpg` twice, `cat/./a.jpg`, `cat//a.jpg`, `cat\\a.jpg`; the first is kept), one whose path another entry
holds as a file or a folder, and one whose name is too long for the file system.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import lzma
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tqdm.auto import tqdm

from smallvision.data.download import CHUNK
from smallvision.data.skipped import Skipped, write_skipped
from smallvision.errors import DataError
from smallvision.files import staging_dir


@dataclass(frozen=True)
class _Entry:
    name: str  # as the archive names it
    parts: tuple[str, ...]  # the checked path components it extracts to
    is_dir: bool
    open: Callable[[], IO[bytes]]


def extract_archive(
    archive: Path, raw_dir: Path, *, max_extract_bytes: float, max_header_bytes: float, progress: bool = True
) -> None:
    """Safely extract a zip or tar archive (detected by content) so that its entries end up in `raw_dir`."""
    archive = Path(archive)
    if zipfile.is_zipfile(archive) and _zip_has_entries(archive):
        extract = _extract_zip
    elif _tar_headers_fit(archive, int(max_extract_bytes), int(max_header_bytes)) and _is_tar(archive):
        extract = _extract_tar
    else:  # a file of zeros reads as an empty tar: an archive without one entry is refused too
        raise DataError(
            f"{archive} is not a readable zip or tar archive (corrupt, incomplete or empty?); "
            "check the file, download it again, or point data.source at a folder of images"
        )
    with staging_dir(raw_dir, "download") as tmp:
        try:
            skipped = extract(archive, tmp, int(max_extract_bytes), progress)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as err:
            raise DataError(
                f"archive {archive} is corrupt or cannot be extracted ({err}); check the file or download it again"
            ) from None
        write_skipped(tmp, skipped)


_TAR_BLOCK = 512
_HEADER_TYPES = {tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, b"X"}
_COMPRESSED = {b"\x1f\x8b": gzip.open, b"BZh": bz2.open, b"\xfd7zXZ\x00": lzma.open}


def _tar_headers_fit(archive: Path, limit: int, header_limit: int) -> bool:
    """Refuse (DataError) a tar whose entries, extended headers included, declare more than `limit` bytes, or one
    of whose extended headers is longer than `header_limit`, by reading only its 512-byte header blocks (a compressed
    tar is decompressed once for this, its data skipped): tarfile reads a PAX or GNU long-name header whole into
    memory when it meets one, before any declared size can be checked. True when the scan passes or the file is no tar it reads (the extraction then says what is wrong)."""
    with open(archive, "rb") as fh:
        magic = fh.read(6)
    opener = next((open_ for prefix, open_ in _COMPRESSED.items() if magic.startswith(prefix)), open)
    total = 0
    try:
        with opener(archive, "rb") as stream:
            while len(block := stream.read(_TAR_BLOCK)) == _TAR_BLOCK and block.strip(b"\0"):
                size, kind = tarfile.nti(block[124:136]), block[156:157]
                if kind in _HEADER_TYPES or kind in tarfile.REGULAR_TYPES:
                    total += size
                if kind in _HEADER_TYPES and size > header_limit:  # one header, read whole by tarfile
                    raise DataError(
                        f"archive {archive} has an extended header {size:,} bytes long, more than "
                        f"data.max_tar_header_bytes={header_limit:,} (archive bomb?); nothing was extracted. Raise "
                        "data.max_tar_header_bytes if the archive is genuine"
                    )
                if kind in _HEADER_TYPES and total > limit:  # before tarfile would read it into memory
                    raise DataError(
                        f"archive {archive} declares more than data.max_extract_bytes={limit:,} bytes, with an "
                        f"extended header {size:,} bytes long (archive bomb?); nothing was extracted. Raise "
                        "data.max_extract_bytes if the archive is genuine"
                    )
                if kind not in (tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.DIRTYPE):  # these carry no data
                    stream.seek(-(-size // _TAR_BLOCK) * _TAR_BLOCK, 1)
    except (OSError, EOFError, tarfile.TarError, zlib.error, lzma.LZMAError, ValueError):
        return True  # not a tar this scan reads: tarfile's own check decides
    _check_declared_size(archive, total, limit)
    return True


def _is_tar(path: Path) -> bool:
    """A tar archive with at least one entry (tarfile takes a file of zeros for an empty one)."""
    try:
        with tarfile.open(path, "r:*") as tf:
            return tf.next() is not None
    except (OSError, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError):
        return False


def _zip_has_entries(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return bool(zf.infolist())
    except (OSError, zipfile.BadZipFile):
        return True  # extraction reports the damage


def _extract_zip(archive: Path, dest: Path, limit: int, progress: bool) -> list[Skipped]:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        plan = []
        for info in infos:
            mode = info.external_attr >> 16
            if info.create_system == 3 and mode:  # unix permissions are recorded
                _refuse_special(archive, info.filename, mode)
            parts = _safe_relative(archive, info.filename)
            plan.append(_Entry(info.filename, parts, info.is_dir(), lambda info=info: zf.open(info)))
        _check_declared_size(archive, sum(info.file_size for info in infos), limit)
        return _write_entries(archive, plan, dest, progress)


def _extract_tar(archive: Path, dest: Path, limit: int, progress: bool) -> list[Skipped]:
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
            parts = _safe_relative(archive, member.name)
            plan.append(_Entry(member.name, parts, member.isdir(), lambda member=member: tf.extractfile(member)))
        _check_declared_size(archive, sum(m.size for m in members if m.isfile()), limit)
        return _write_entries(archive, plan, dest, progress)


def _write_entries(archive: Path, plan: list[_Entry], dest: Path, progress: bool) -> list[Skipped]:
    """Extract the planned entries under `dest`; return those that cannot have a file of their own, with why."""
    skipped: list[Skipped] = []
    holder: dict[tuple[str, ...], str] = {}  # extracted file -> the entry it came from
    for entry in tqdm(plan, desc="extract", unit="file", disable=not progress):
        if not entry.parts:  # "", ".", "./": the archive's root
            if not entry.is_dir:
                skipped.append(Skipped(entry.name, "not extracted: a file entry without a file name"))
            continue
        if not entry.is_dir and entry.parts in holder:
            reason = f"not extracted: names the same file as the entry {holder[entry.parts]!r}, which was kept"
            skipped.append(Skipped(entry.name, reason))
            continue
        target = dest.joinpath(*entry.parts)
        try:
            if entry.is_dir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with entry.open() as src, open(target, "xb") as out:  # "x": never overwrite what an entry wrote
                shutil.copyfileobj(src, out, CHUNK)
        except (FileExistsError, IsADirectoryError, NotADirectoryError):
            reason = "not extracted: another entry already holds its path (as a file or a folder)"
            skipped.append(Skipped(entry.name, reason))
            continue
        except OSError as err:
            if err.errno != errno.ENAMETOOLONG:
                raise
            skipped.append(Skipped(entry.name, "not extracted: its name is too long for this file system"))
            continue
        except (NotImplementedError, RuntimeError) as err:  # unsupported compression, encryption
            raise DataError(
                f"cannot extract {entry.name!r} from {archive} ({err}); extract it yourself and set "
                "data.source to the folder"
            ) from None
        holder[entry.parts] = entry.name
    return skipped


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

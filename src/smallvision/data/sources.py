"""Put a data source's images under the raw folder: download, verify, extract, copy or generate.

`fetch_source` accepts an http(s) URL, a `file://` URL, a local folder, a local
.zip/.tar/.tar.gz/.tgz (also .tar.bz2/.tar.xz) archive, or "synthetic". Whatever the
source, the raw folder is built in a hidden sibling folder and renamed into place only
when complete, so a killed run never leaves a raw folder that looks finished.

- Downloads go to `<raw_dir.parent>/downloads/<name>.part`, resume with an HTTP Range
  request, and are renamed to `<name>` only after the size (and sha256, when configured)
  check out. A finished download is reused by later runs.
- A local archive is read in place (never copied); a local folder is *copied* (symlinks
  inside it are copied as symlinks, never followed), so the source is never modified and
  later stages cannot modify it through the raw folder.
- Extraction refuses, before writing anything, archives with absolute paths, `..`
  components, link entries (all symlinks and hard links, wherever they point: image
  datasets have no need for them), device/special files, or a declared total size above
  `max_extract_bytes` (archive bombs).
"""

from __future__ import annotations

import hashlib
import http.client
import inspect
import lzma
import os
import re
import shutil
import socket
import stat
import tarfile
import tempfile
import threading
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urlparse
from urllib.request import Request, getproxies, url2pathname, urlopen

from tqdm.auto import tqdm

from smallvision.errors import ConfigError, DataError

_CHUNK = 1 << 20
_HTTP_SCHEMES = ("http", "https")


def fetch_source(
    source: str,
    raw_dir: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    connect_timeout_s: float = 10,
    max_extract_bytes: float = 4e9,
    download_dir: Path | None = None,
    synthetic: dict | None = None,
    progress: bool = True,
    retries: int = 3,
) -> Path:
    """Leave the images of `source` under `raw_dir` (replacing it) and return `raw_dir`.

    `sha256`/`size` verify a downloaded or local archive. `connect_timeout_s` bounds the
    connection and every read of a download; `retries` is how many times an interrupted
    transfer is resumed within this call. `synthetic` holds the keyword arguments of
    `smallvision.data.synthetic.generate` when `source == "synthetic"`.
    """
    raw_dir = Path(raw_dir)
    source = str(source).strip()
    _check_options(sha256, size, connect_timeout_s, max_extract_bytes, retries)
    if source == "synthetic":
        _generate_synthetic(raw_dir, synthetic or {})
        return raw_dir

    scheme = urlparse(source).scheme.lower()
    if scheme in _HTTP_SCHEMES:
        download_dir = Path(download_dir) if download_dir is not None else raw_dir.parent / "downloads"
        _refuse_inside(download_dir, raw_dir, what="the download folder")
        archive = download(
            source,
            download_dir,
            sha256=sha256,
            size=size,
            timeout_s=connect_timeout_s,
            retries=retries,
            progress=progress,
        )
        extract_archive(archive, raw_dir, max_extract_bytes=max_extract_bytes, progress=progress)
        return raw_dir

    path = _local_path(source, scheme)
    if not path.exists():
        raise DataError(
            f"data source {source!r} does not exist; set data.source to an existing folder or archive, "
            "e.g. data=folder data.source=/path/to/kagglecatsanddogs_5340.zip"
        )
    _refuse_inside(path, raw_dir, what="the data source")
    if path.is_dir():
        copy_folder(path, raw_dir, progress=progress)
    else:
        verify_file(path, sha256=sha256, size=size)
        extract_archive(path, raw_dir, max_extract_bytes=max_extract_bytes, progress=progress)
    return raw_dir


def _check_options(sha256, size, connect_timeout_s, max_extract_bytes, retries) -> None:
    """Refuse bad settings before any network or disk work; each message names the config key."""
    checks = [
        (
            "data.sha256",
            sha256,
            sha256 is None or re.fullmatch(r"\s*[0-9a-fA-F]{64}\s*", str(sha256)),
            "64 hex digits, or null",
        ),
        ("data.size", size, size is None or (_is_int(size) and size > 0), "a positive integer (bytes), or null"),
        (
            "data.connect_timeout_s",
            connect_timeout_s,
            _is_number(connect_timeout_s) and connect_timeout_s > 0,
            "seconds > 0",
        ),
        (
            "data.max_extract_bytes",
            max_extract_bytes,
            _is_number(max_extract_bytes) and max_extract_bytes > 0,
            "bytes > 0",
        ),
        ("data.download_retries", retries, _is_int(retries) and retries >= 0, "an integer >= 0"),
    ]
    for key, value, ok, allowed in checks:
        if not ok:
            raise ConfigError(f"{key}={value!r} is not allowed: use {allowed}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --------------------------------------------------------------------------- download


class _Interrupted(Exception):
    """A transfer stopped early; what arrived is kept in the .part file for a resume."""


def download(
    url: str,
    download_dir: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    timeout_s: float = 10,
    retries: int = 3,
    progress: bool = True,
) -> Path:
    """Download `url` into `download_dir` and return the complete, verified file.

    Bytes arrive in `<name>.part`; an interrupted transfer resumes from its end (HTTP Range),
    and the file gets its final name only once complete and verified, so a file with the
    final name is always complete.
    """
    name = unquote(Path(urlparse(url).path).name) or "download"
    final = Path(download_dir) / name
    part = final.with_name(name + ".part")
    if final.exists():
        try:
            verify_file(final, sha256=sha256, size=size)
            return final
        except DataError:
            final.unlink()  # stale or changed expectations: fetch it anew
    _check_resolvable(url, timeout_s)
    final.parent.mkdir(parents=True, exist_ok=True)

    for _attempt in range(retries + 1):
        try:
            total = _transfer(url, part, timeout_s=timeout_s, progress=progress)
            break
        except _Interrupted as err:
            last_error = err
    else:
        kept = part.stat().st_size if part.exists() else 0
        raise DataError(
            f"download of {url} was interrupted {retries + 1} times (last: {last_error}); "
            f"{kept} bytes are kept in {part}: run again to resume, or {_local_copy_hint(url)}"
        )

    received = part.stat().st_size
    if total is not None and received != total:
        part.unlink()
        raise DataError(f"download of {url} gave {received} bytes but the server announced {total}; run again")
    try:
        verify_file(part, sha256=sha256, size=size)
    except DataError as err:
        part.unlink()  # resuming a wrong file cannot fix it
        raise DataError(f"{err}; the download was removed, run again to download it anew") from None
    os.replace(part, final)
    return final


def _transfer(url: str, part: Path, *, timeout_s: float, progress: bool) -> int | None:
    """Fetch the rest of `url` into `part`. Returns the total size the server announced (None: unknown)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "smallvision", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urlopen(Request(url, headers=headers), timeout=timeout_s)
    except HTTPError as err:
        if err.code == 416 and offset:  # nothing left to send: either complete or a wrong .part
            total = _content_range(err.headers.get("Content-Range", ""))[1]
            if total == offset:
                return total
            part.unlink()
            raise _Interrupted("the server refused to resume; starting over") from None
        raise DataError(
            f"download of {url} failed: HTTP {err.code} {err.reason}; try again later, or {_local_copy_hint(url)}"
        ) from None
    except (URLError, OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", err)
        raise DataError(f"cannot download {url}: {reason} (no network?). Instead, {_local_copy_hint(url)}") from None

    with response:
        if offset and response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range", ""))
            if start != offset:
                part.unlink()
                raise _Interrupted(f"the server resumed at byte {start}, not {offset}; starting over")
            mode = "ab"
        else:  # a full response: the server ignored the Range request, or there was nothing to resume
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        with (
            open(part, mode) as out,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f"download {part.name[:-5]}",
                disable=not progress,
            ) as bar,
        ):
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (http.client.HTTPException, OSError) as err:
                    raise _Interrupted(f"connection lost: {err!r}") from None
                if not chunk:
                    break
                out.write(chunk)
                bar.update(len(chunk))
    received = part.stat().st_size
    if total is not None and received < total:
        raise _Interrupted(f"connection closed after {received} of {total} bytes")
    return total


def _content_range(header: str) -> tuple[int | None, int | None]:
    """(first byte, total size) from 'bytes 100-199/1000' or 'bytes */1000'."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", header or "")
    if not match:
        return None, None
    start, total = match.groups()
    return (int(start) if start else None), (int(total) if total and total != "*" else None)


def _check_resolvable(url: str, timeout_s: float) -> None:
    """Fail within `timeout_s` when the host name cannot be resolved (the socket timeout does not cover DNS)."""
    parsed = urlparse(url)
    if not parsed.hostname or parsed.scheme in getproxies():
        return  # a proxy resolves the name
    result: list[BaseException | None] = []

    def resolve() -> None:
        try:
            socket.getaddrinfo(parsed.hostname, parsed.port or 443)
            result.append(None)
        except OSError as err:
            result.append(err)

    worker = threading.Thread(target=resolve, daemon=True)
    worker.start()
    worker.join(timeout_s)
    if not result or result[0] is not None:
        reason = result[0] if result else f"no answer within {timeout_s:g} s"
        raise DataError(
            f"cannot download {url}: cannot resolve {parsed.hostname} ({reason}; no network?). "
            f"Instead, {_local_copy_hint(url)}"
        )


def _local_copy_hint(url: str) -> str:
    name = unquote(Path(urlparse(url).path).name) or "archive.zip"
    return f"use a local copy: data=folder data.source=/path/to/{name}"


def verify_file(path: Path, *, sha256: str | None = None, size: int | None = None) -> None:
    """Raise DataError when `path` does not have the expected size or sha256 (None: not checked)."""
    if size is not None:
        actual = path.stat().st_size
        if actual != int(size):
            raise DataError(f"{path} has {actual} bytes, expected {int(size)} (data.size)")
    if sha256:
        digest = file_sha256(path)
        if digest != sha256.strip().lower():
            raise DataError(f"sha256 of {path} is {digest}, expected {sha256.strip().lower()} (data.sha256)")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- extraction


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
                    shutil.copyfileobj(src, out, _CHUNK)
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
                shutil.copyfileobj(src, out, _CHUNK)


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


# --------------------------------------------------------------------------- folders


def copy_folder(source: Path, raw_dir: Path, *, progress: bool = True) -> None:
    """Copy a folder of images into `raw_dir`. Symlinks are copied as links (split judges them), never followed."""
    count = sum(len(files) for _, _, files in os.walk(source))
    with staging_dir(raw_dir) as tmp, tqdm(total=count, desc="copy", unit="file", disable=not progress) as bar:

        def copy(src: str, dst: str) -> None:
            shutil.copy2(src, dst)
            bar.update()

        shutil.copytree(source, tmp, symlinks=True, copy_function=copy, dirs_exist_ok=True)


def _generate_synthetic(raw_dir: Path, options: dict) -> None:
    from smallvision.data.synthetic import generate

    allowed = set(inspect.signature(generate).parameters) - {"out_dir"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"unknown data.synthetic keys {unknown}; allowed: {sorted(allowed)}")
    with staging_dir(raw_dir) as tmp:
        generate(tmp, **options)


def _local_path(source: str, scheme: str) -> Path:
    if scheme == "file":
        parsed = urlparse(source)
        return Path(url2pathname(unquote(parsed.path)))
    if len(scheme) > 1:  # one letter is a Windows drive
        raise DataError(
            f"data.source {source!r}: unsupported URL scheme {scheme!r}; use http(s)://, file:// or a local path"
        )
    return Path(source).expanduser()


def _refuse_inside(path: Path, raw_dir: Path, *, what: str) -> None:
    """The raw folder is replaced wholesale, so nothing it must keep may live inside it (and vice versa for copies)."""
    inner, raw = Path(path).resolve(), Path(raw_dir).resolve()
    if inner == raw or raw in inner.parents:
        raise DataError(
            f"{what} {path} is inside the raw folder {raw_dir}, which download replaces; move it or change paths.raw"
        )
    if inner.is_dir() and inner in raw.parents:
        raise DataError(
            f"the raw folder {raw_dir} is inside {what} {path}; it would copy into itself, change paths.raw"
        )


# --------------------------------------------------------------------------- atomic folders


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

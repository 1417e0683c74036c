"""Download a file over HTTP(S) with progress, resume and verification.

Bytes arrive in `<download_dir>/<name>.part`, an interrupted transfer resumes with an HTTP Range request, and
the file is renamed to `<name>` only after its size (and sha256, when configured) check out. A finished download
is reused by later runs. Offline, the error comes within the connect timeout and names a local-copy fix.
A transfer never grows past the expected size (data.size) or, when that is not known, data.max_download_bytes:
a server that announces more is refused before any byte is written, one that sends more is cut off. A server that
sends too slowly (less than data.min_download_bytes_per_s over data.download_rate_window_s) is cut off too: one that
drips a byte every few seconds never trips the read timeout, which starts again with every byte.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import threading
import time
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urlparse
from urllib.request import Request, getproxies, urlopen

from tqdm.auto import tqdm

from smallvision.errors import DataError
from smallvision.files import special_file_kind

CHUNK = 1 << 20


class _Interrupted(Exception):
    """A transfer stopped early; what arrived is kept in the .part file for a resume."""


def download(
    url: str,
    download_dir: Path,
    *,
    sha256: str | None,
    size: int | None,
    timeout_s: float,
    retries: int,
    max_bytes: float,
    min_rate: tuple[float, float] | None,
    progress: bool = True,
) -> Path:
    """Download `url` into `download_dir` and return the complete, verified file.

    Bytes arrive in `<name>.part`; an interrupted transfer resumes from its end (HTTP Range),
    and the file gets its final name only once complete and verified, so a file with the
    final name is always complete. At most `size` bytes (when given) or `max_bytes` are accepted.
    `min_rate` is (bytes per second, window in seconds): a transfer slower than that over a window is cut off,
    its bytes kept for a resume (None: no floor).
    """
    name = unquote(Path(urlparse(url).path).name) or "download"
    if not _is_plain(name):  # %2e%2e%2f...: it would land outside download_dir; %2e: on it
        raise DataError(
            f"the URL {url} names its file {name!r} once decoded, not a plain file name; "
            f"give a URL that ends in a file name, or {_local_copy_hint(url)}"
        )
    final = Path(download_dir) / name
    part = final.with_name(name + ".part")
    for path in (final, part):
        kind = special_file_kind(path)
        if kind:  # reading or appending to it would block or never end
            raise DataError(f"{path} is {kind}, where the download goes: remove it and run again")
    if final.exists():
        try:
            verify_file(final, sha256=sha256, size=size)
            return final
        except DataError:
            final.unlink()  # stale or changed expectations: fetch it anew
    _check_resolvable(url, timeout_s)
    final.parent.mkdir(parents=True, exist_ok=True)
    cap = _Cap(int(size), expected=True) if size is not None else _Cap(int(max_bytes), expected=False)

    for _attempt in range(retries + 1):
        try:
            total = _transfer(url, part, timeout_s=timeout_s, progress=progress, cap=cap, min_rate=min_rate)
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


class _Cap:
    """The most bytes a download may have: the expected size (data.size) or, unknown, data.max_download_bytes."""

    def __init__(self, limit: int, expected: bool) -> None:
        self.limit, self.expected = limit, expected

    def refuse(self, url: str, part: Path, what: str) -> DataError:
        part.unlink(missing_ok=True)
        if self.expected:
            return DataError(
                f"download of {url} stopped: the server {what}, expected {self.limit} (data.size); nothing was kept. "
                "Check data.size (null: not checked)"
            )
        return DataError(
            f"download of {url} stopped: the server {what}, more than data.max_download_bytes={self.limit:,} "
            "allows (nothing was kept); if the file is genuine, set data.size to its size or raise the limit"
        )


class _Pace:
    """The slowest a transfer may go: at least `bytes_per_s` over every window of `window_s` seconds."""

    def __init__(self, min_rate: tuple[float, float] | None, received: int) -> None:
        self.bytes_per_s, self.window_s = min_rate if min_rate is not None else (0.0, float("inf"))
        self.start, self.received = time.monotonic(), received

    def answer(self, request: Request, timeout_s: float):
        """urlopen(request) within one window: every byte restarts the socket's timeout, so a server that drips its
        status line or headers would hold urlopen for ever. Past the window the download stops and the request is left
        to its thread, a daemon, which cannot keep the process alive."""
        if self.window_s == float("inf"):
            return urlopen(request, timeout=timeout_s)
        done: list = []

        def ask() -> None:
            try:
                done.append(urlopen(request, timeout=timeout_s))
            except BaseException as err:  # noqa: BLE001 - raised again in the caller's thread
                done.append(err)

        worker = threading.Thread(target=ask, daemon=True)
        worker.start()
        worker.join(self.window_s)
        if not done:
            raise DataError(
                f"download of {request.full_url} stopped: the server did not answer within "
                f"data.download_rate_window_s={self.window_s:g} s; try again later, or {_local_copy_hint(request.full_url)}"
            )
        if isinstance(done[0], BaseException):
            raise done[0]
        return done[0]

    def check(self, received: int, url: str, part: Path) -> None:
        elapsed = time.monotonic() - self.start
        if elapsed < self.window_s:
            return
        rate = (received - self.received) / elapsed
        if rate < self.bytes_per_s:
            raise DataError(
                f"download of {url} stopped: the server sent {rate:.0f} bytes per second over the last {elapsed:.0f} "
                f"s, less than data.min_download_bytes_per_s={self.bytes_per_s:g}; {received} bytes are kept in "
                f"{part}: run again to resume, or {_local_copy_hint(url)}"
            )
        self.start, self.received = time.monotonic(), received


def _transfer(
    url: str, part: Path, *, timeout_s: float, progress: bool, cap: _Cap, min_rate: tuple[float, float] | None
) -> int | None:
    """Fetch the rest of `url` into `part`. Returns the total size the server announced (None: unknown)."""
    offset = part.stat().st_size if part.exists() else 0
    pace = _Pace(min_rate, offset)  # from the request on: a server slow to answer counts too
    headers = {"User-Agent": "smallvision", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = pace.answer(Request(url, headers=headers), timeout_s)
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
        if total is not None and total > cap.limit:
            raise cap.refuse(url, part, f"announces {total:,} bytes")
        received = offset
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
                    chunk = response.read1(CHUNK)  # what has arrived: a slow server is judged between reads
                except (http.client.HTTPException, OSError) as err:
                    raise _Interrupted(f"connection lost: {err!r}") from None
                if not chunk:
                    break
                received += len(chunk)
                if received > cap.limit:  # no Content-Length, or a server sending past it
                    break
                out.write(chunk)
                bar.update(len(chunk))
                pace.check(received, url, part)
        if received > cap.limit:
            raise cap.refuse(url, part, f"kept sending past {cap.limit:,} bytes")
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


def _is_plain(name: str) -> bool:
    """A file name of its own: no folder part, not `.` or `..` (what a URL's %-escapes can decode to)."""
    return name not in (".", "..") and not any(c in name for c in "/\\\0")


def _local_copy_hint(url: str) -> str:
    name = unquote(Path(urlparse(url).path).name)
    name = name if name and _is_plain(name) else "archive.zip"
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
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()

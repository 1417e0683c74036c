"""The download stage: local folders and archives, hostile archives, and HTTP downloads against a local server."""

from __future__ import annotations

import hashlib
import io
import socket
import stat
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers.study import config

from smallvision.data.sources import fetch_source
from smallvision.errors import ConfigError, DataError
from smallvision.files import OUTPUT_MARKER

# conf/data/_base.yaml's settings (a test changes the ones it is about)
DATA = {
    "sha256": None,
    "size": None,
    "connect_timeout_s": 10,
    "max_extract_bytes": 4.0e9,
    "max_tar_header_bytes": 1.0e6,
    "max_download_bytes": 1.2e9,
    "min_download_rate": (10_000, 60),
    "synthetic": None,
    "retries": 3,
}


def fetch(source, raw, **kwargs):
    return fetch_source(str(source), raw, progress=False, **{**DATA, **kwargs})


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes (links as their target text), to compare before/after; the stage's
    marker on its raw folder aside."""
    return {
        p.relative_to(root).as_posix(): (str(p.readlink()).encode() if p.is_symlink() else p.read_bytes())
        for p in sorted(root.rglob("*"))
        if (p.is_file() or p.is_symlink()) and p != root / OUTPUT_MARKER
    }


def everything_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.fixture
def image_zip(tmp_path, make_tree) -> Path:
    source = make_tree(tmp_path / "src" / "PetImages", {"Cat": 3, "Dog": 3})
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(source.rglob("*")):
            zf.write(path, path.relative_to(source.parent).as_posix())
    return archive


# --------------------------------------------------------------------------- local sources


def test_local_zip_is_extracted_in_place_without_copying(tmp_path, image_zip):
    raw = tmp_path / "data" / "raw"
    before = image_zip.read_bytes()
    assert fetch(image_zip, raw) == raw
    assert (raw / "PetImages" / "Cat" / "0.jpg").is_file() and len(tree(raw)) == 6
    assert (raw / OUTPUT_MARKER).read_text() == "download\n"  # its next run may replace it
    assert image_zip.read_bytes() == before
    # no downloads/ folder, no copy of the zip, no leftovers
    assert everything_under(tmp_path / "data") == {"raw"} | {f"raw/{p}" for p in everything_under(raw)}


@pytest.mark.parametrize(("name", "mode"), [("imgs.tar.gz", "w:gz"), ("imgs.tgz", "w:gz"), ("imgs.tar", "w")])
def test_file_url_and_tar_archives(tmp_path, make_tree, name, mode):
    source = make_tree(tmp_path / "src", {"a": 2, "b": 2})
    archive = tmp_path / name
    with tarfile.open(archive, mode) as tf:
        tf.add(source, arcname="imgs")
    raw = tmp_path / "raw"
    fetch(archive.as_uri(), raw)
    assert tree(raw) == {f"imgs/{k}": v for k, v in tree(source).items()}


def test_local_folder_is_copied_and_never_modified(tmp_path, make_tree):
    source = make_tree(tmp_path / "mine", {"a": 2, "b": 2})
    (source / "a" / "link.jpg").symlink_to(source / "b" / "0.jpg")
    before = tree(source)
    raw = tmp_path / "raw"
    fetch(source, raw)
    assert tree(raw) == before
    assert (raw / "a" / "link.jpg").is_symlink()  # kept as a link, for split to judge
    (raw / "a" / "0.jpg").write_bytes(b"changed")  # the raw copy is independent of the source
    assert tree(source) == before


def test_missing_source_and_overlapping_paths(tmp_path, make_tree):
    with pytest.raises(DataError, match="does not exist"):
        fetch(tmp_path / "nope.zip", tmp_path / "raw")
    raw = make_tree(tmp_path / "raw", {"a": 1, "b": 1})
    with pytest.raises(DataError, match="inside the raw folder"):
        fetch(raw / "a", raw)
    with pytest.raises(DataError, match="copy into itself"):
        fetch(tmp_path, raw)
    with pytest.raises(DataError, match="unsupported URL scheme 'ftp'"):
        fetch("ftp://example.org/x.zip", tmp_path / "raw2")


def test_a_new_source_replaces_the_raw_folder_only_when_complete(tmp_path, make_tree, image_zip):
    raw = tmp_path / "raw"
    fetch(image_zip, raw)
    good = tree(raw)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(image_zip.read_bytes()[:-100])
    with pytest.raises(DataError):
        fetch(broken, raw)
    assert tree(raw) == good  # the previous, complete raw folder is untouched
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no partial folder left


def test_leftovers_of_a_killed_run_are_removed(tmp_path, image_zip):
    stale = tmp_path / ".raw.abc123.partial"
    (stale / "PetImages").mkdir(parents=True)
    fetch(image_zip, tmp_path / "raw")
    assert not stale.exists()


# --------------------------------------------------------------------------- hostile and broken archives


def zip_with(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok/fine.txt", b"harmless")
        for info, data in entries:
            zf.writestr(info, data)
    return path


def tar_with(path: Path, members: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w") as tf:
        ok = tarfile.TarInfo("ok/fine.txt")
        ok.size = 8
        tf.addfile(ok, io.BytesIO(b"harmless"))
        for member in members:
            tf.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return path


def symlink_info(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def zip_symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def device_info() -> tarfile.TarInfo:
    info = tarfile.TarInfo("dev/null_copy")
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    return info


def hardlink_info() -> tarfile.TarInfo:
    info = tarfile.TarInfo("ok/passwd")
    info.type, info.linkname = tarfile.LNKTYPE, "/etc/passwd"
    return info


HOSTILE = {
    "zip ../ entry": (lambda p: zip_with(p / "a.zip", [("../escaped.txt", b"evil")]), r"'\.\.'"),
    "zip nested ../": (lambda p: zip_with(p / "a.zip", [("ok/../../escaped.txt", b"evil")]), r"'\.\.'"),
    "zip absolute path": (lambda p: zip_with(p / "a.zip", [(str(p / "escaped.txt"), b"evil")]), "absolute path"),
    "zip symlink": (lambda p: zip_with(p / "a.zip", [(zip_symlink("ok/link"), b"/etc/passwd")]), "link entry"),
    "tar ../ entry": (lambda p: tar_with(p / "a.tar", [tarfile.TarInfo("../escaped.txt")]), r"'\.\.'"),
    "tar absolute path": (lambda p: tar_with(p / "a.tar", [tarfile.TarInfo(str(p / "escaped.txt"))]), "absolute path"),
    "tar symlink outside": (
        lambda p: tar_with(p / "a.tar", [symlink_info("ok/link", "../../escaped.txt")]),
        "link entry",
    ),
    "tar hard link": (lambda p: tar_with(p / "a.tar", [hardlink_info()]), "link entry"),
    "tar device file": (lambda p: tar_with(p / "a.tar", [device_info()]), "device or special file"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_and_writes_nothing(tmp_path, case):
    make, message = HOSTILE[case]
    work = tmp_path / "work"
    work.mkdir()
    archive = make(tmp_path)
    before = everything_under(tmp_path)
    with pytest.raises(DataError, match=message):
        fetch(archive, work / "data" / "raw")
    after = everything_under(tmp_path)
    assert after - before <= {"work/data"}  # at most the (empty) parent of the raw folder
    assert not any((work / "data").iterdir())
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path.parent / "escaped.txt").exists()


def bomb(path: Path, sizes: list[int]) -> Path:
    """A zip or gzipped tar of zero-filled entries of `sizes` bytes: tiny on disk, large once extracted."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for i, size in enumerate(sizes):
                zf.writestr(f"zeros{i}.bin", b"\0" * size)
        return path
    with tarfile.open(path, "w:gz") as tf:
        for i, size in enumerate(sizes):
            info = tarfile.TarInfo(f"PetImages/zeros{i}.bin")
            info.size = size
            tf.addfile(info, io.BytesIO(b"\0" * size))
    return path


@pytest.mark.parametrize("name", ["bomb.zip", "bomb.tar.gz", "bomb.tgz"])
@pytest.mark.parametrize("sizes", [[5_000_000], [600_000, 600_000, 3_800_000]], ids=["one entry", "the sum of entries"])
def test_archive_bomb_is_refused_by_its_declared_size(tmp_path, name, sizes):
    archive = bomb(tmp_path / name, sizes)
    assert archive.stat().st_size < 50_000  # a hundredfold expansion
    with pytest.raises(DataError, match="declares 5,000,000 bytes.*max_extract_bytes=1,000,000"):
        fetch(archive, tmp_path / "raw", max_extract_bytes=1e6)
    assert not (tmp_path / "raw").exists()
    fetch(archive, tmp_path / "raw", max_extract_bytes=5e6)  # within the limit: extracted
    assert sum(f.stat().st_size for f in (tmp_path / "raw").rglob("*.bin")) == 5_000_000


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_archive(tmp_path, image_zip, damage):
    bad = tmp_path / "bad.zip"
    data = image_zip.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"PK\x03\x04" + b"\x17" * 500)
    with pytest.raises(DataError, match="not a readable zip or tar archive|corrupt"):
        fetch(bad, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_corrupt_member_data(tmp_path, image_zip):
    data = bytearray(image_zip.read_bytes())
    data[200:260] = b"\xff" * 60  # inside the first member's compressed bytes: the CRC check fails
    bad = tmp_path / "crc.zip"
    bad.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt"):
        fetch(bad, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


# --------------------------------------------------------------------------- downloads


class Server:
    """A local HTTP server for one file, honouring Range; `cut_after` drops the next N responses midway."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.cut_next = 0
        self.status = 200
        self.honour_range = True
        self.ranges: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server.ranges.append(self.headers.get("Range"))
                if server.status != 200:
                    self.send_error(server.status)
                    return
                start = 0
                if server.honour_range and self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                body = server.payload[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_next:
                    server.cut_next -= 1
                    self.wfile.write(body[: len(body) // 3])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)  # the connection drops mid-transfer
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/files/pets.zip"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(image_zip):
    running = Server(image_zip.read_bytes())
    yield running
    running.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_full_download_verifies_and_extracts(tmp_path, server):
    raw = tmp_path / "data" / "raw"
    fetch(server.url, raw, sha256=sha(server.payload).upper(), size=len(server.payload))
    assert (raw / "PetImages" / "Dog" / "2.jpg").is_file()
    downloads = tmp_path / "data" / "downloads"
    assert [p.name for p in downloads.iterdir()] == ["pets.zip"]  # kept outside raw, no .part left
    assert (downloads / "pets.zip").read_bytes() == server.payload
    fetch(server.url, raw)  # a second run reuses the complete file
    assert server.ranges == [None]


def test_interrupted_download_resumes_and_verifies(tmp_path, server):
    raw = tmp_path / "data" / "raw"
    part = tmp_path / "data" / "downloads" / "pets.zip.part"
    server.cut_next = 1
    with pytest.raises(DataError, match="interrupted 1 times.*run again to resume"):
        fetch(server.url, raw, sha256=sha(server.payload), retries=0)
    kept = part.stat().st_size
    assert 0 < kept < len(server.payload)
    assert not (tmp_path / "data" / "downloads" / "pets.zip").exists() and not raw.exists()
    fetch(server.url, raw, sha256=sha(server.payload), retries=0)
    assert server.ranges[-1] == f"bytes={kept}-"
    assert (tmp_path / "data" / "downloads" / "pets.zip").read_bytes() == server.payload
    assert not part.exists() and (raw / "PetImages" / "Cat" / "0.jpg").is_file()


def test_dropped_connections_are_retried_within_one_run(tmp_path, server):
    server.cut_next = 2
    fetch(server.url, tmp_path / "raw", sha256=sha(server.payload), retries=2, download_dir=tmp_path / "dl")
    assert (
        len(server.ranges) == 3
        and server.ranges[0] is None
        and all(r and r.startswith("bytes=") for r in server.ranges[1:])
    )
    assert (tmp_path / "dl" / "pets.zip").read_bytes() == server.payload


def test_server_ignoring_range_restarts_cleanly(tmp_path, server):
    server.cut_next, server.honour_range = 1, False
    fetch(server.url, tmp_path / "raw", sha256=sha(server.payload), retries=1, download_dir=tmp_path / "dl")
    assert (tmp_path / "dl" / "pets.zip").read_bytes() == server.payload


def test_checksum_mismatch_leaves_no_file_taken_as_complete(tmp_path, server):
    downloads = tmp_path / "data" / "downloads"
    with pytest.raises(DataError, match="sha256 of .* expected 0000.*download was removed"):
        fetch(server.url, tmp_path / "data" / "raw", sha256="0" * 64)
    assert list(downloads.iterdir()) == []
    assert not (tmp_path / "data" / "raw").exists()
    with pytest.raises(DataError, match=r"expected 12 \(data.size\)"):
        fetch(server.url, tmp_path / "data" / "raw", size=12)
    assert list(downloads.iterdir()) == []


def test_server_error_is_clear(tmp_path, server):
    server.status = 500
    with pytest.raises(DataError, match=r"failed: HTTP 500 .*use a local copy"):
        fetch(server.url, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_unreachable_url_fails_fast_with_the_local_copy_hint(tmp_path):
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/download/kagglecatsanddogs_5340.zip"
    started = time.monotonic()
    with pytest.raises(DataError) as caught:
        fetch(url, tmp_path / "raw", connect_timeout_s=3)
    assert time.monotonic() - started < 3
    message = str(caught.value)
    assert url in message and "use a local copy: data=folder data.source=/path/to/kagglecatsanddogs_5340.zip" in message


def test_unresolvable_host_fails_within_the_timeout(tmp_path):
    started = time.monotonic()
    with pytest.raises(DataError, match="cannot download http://no-such-host.invalid/x.zip.*use a local copy"):
        fetch("http://no-such-host.invalid/x.zip", tmp_path / "raw", connect_timeout_s=2)
    assert time.monotonic() - started < 4


@pytest.mark.parametrize(
    "option, value",
    [
        ("sha256", "abc"),
        ("size", -5),
        ("connect_timeout_s", 0),
        ("max_extract_bytes", "lots"),
        ("retries", -1),
    ],
)
def test_bad_settings_are_refused_before_any_work(tmp_path, option, value):
    key = {"retries": "download_retries"}.get(option, option)
    with pytest.raises(ConfigError, match=rf"data\.{key}={value!r} must be"):
        config("data=folder", "data.source=images.zip", f"data.{key}={value}")
    assert not (tmp_path / "raw").exists()

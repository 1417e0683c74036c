"""HTTP downloads against a local server: resume, retries, checksums, clear errors."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers.sources import DATA, fetch

from smallvision.data.download import download, file_sha256, verify_file
from smallvision.errors import DataError


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


def test_download_returns_the_complete_verified_file_which_verify_file_accepts(tmp_path, server):
    settings = {"timeout_s": 10, "retries": 0, "max_bytes": DATA["max_download_bytes"], "min_rate": None}
    digest = sha(server.payload)
    path = download(server.url, tmp_path / "dl", sha256=digest, size=len(server.payload), progress=False, **settings)
    assert path == tmp_path / "dl" / "pets.zip" and path.read_bytes() == server.payload
    assert file_sha256(path) == digest
    verify_file(path, sha256=digest.upper(), size=len(server.payload))  # no error: the file is the one expected
    with pytest.raises(DataError, match=rf"sha256 of .* is {digest}, expected 0+ \(data.sha256\)"):
        verify_file(path, sha256="0" * 64)
    with pytest.raises(DataError, match=rf"has {len(server.payload)} bytes, expected 3 \(data.size\)"):
        verify_file(path, size=3)


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

"""The last cases of the reliability round, one test each: a tar whose one extended header is huge though the whole
archive declares less than the extraction limit (refused before tarfile reads the header into memory), an HTTP body
of zeros taken for an empty archive, a list setting replaced by a single value, and the bound on a header's size
checked first. Each refusal: exit status 2, one `smallvision: error:` line naming the cause, no traceback, and every
file the stage does not own byte-identical after. The stages run in this process (helpers.entry)."""

from __future__ import annotations

import io
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers.entry import assert_one_line_error, run_stage
from helpers.hostile import deadline, jpeg

from e2e.test_outputs import project_files, snapshot


def pax_tar(path: Path, header_bytes: int) -> Path:
    """A gzipped tar of one image whose PAX header holds `header_bytes` of comment: it compresses to kilobytes."""
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("cat/0.jpg")
        info.pax_headers = {"comment": "x" * header_bytes}
        image = jpeg(1)
        info.size = len(image)
        tf.addfile(info, io.BytesIO(image))
    return path


def sparse_pax_tar(path: Path, header_bytes: int) -> Path:
    """A plain tar whose first block is a PAX header declaring `header_bytes`, followed by that many zero bytes as
    a sparse file: no disk and no time to make, whatever the size."""
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, header_bytes
    with open(path, "wb") as fh:
        fh.write(info.tobuf(format=tarfile.USTAR_FORMAT))
        fh.truncate(512 + header_bytes)
    return path


@pytest.mark.parametrize(
    ("make", "size", "shown"),
    [(pax_tar, 50_000_000, "50,000,"), (sparse_pax_tar, 500_000_000, "500,000,000")],
    ids=["a real tar.gz, 50 MB", "a 500 MB header"],
)
def test_a_tar_with_one_huge_extended_header_is_refused_before_tarfile_reads_it(
    tmp_path, monkeypatch, capsys, make, size, shown
):
    """A header of 50 or 500 MB is far under data.max_extract_bytes (4 GB), but tarfile would read it whole into
    memory (a 1 GiB one took 3 GB and a minute): the header scan refuses it by its declared size, and tarfile never
    opens the archive."""
    monkeypatch.chdir(tmp_path)
    archive = make(tmp_path / ("pets.tar.gz" if make is pax_tar else "pets.tar"), size)
    assert archive.stat().st_blocks * 512 < 1_000_000  # what it takes on disk
    opened = []
    real_open = tarfile.open
    monkeypatch.setattr(tarfile, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    started = time.monotonic()
    outcome = run_stage("download", capsys, "data=folder", f"data.source={archive}")
    assert time.monotonic() - started < 30
    assert_one_line_error(
        outcome,
        f"archive {archive} has an extended header {shown}",
        "more than data.max_tar_header_bytes=1,000,000",
        "nothing was extracted",
    )
    assert opened == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]


def test_a_header_within_its_bound_is_extracted(tmp_path, monkeypatch, capsys):
    """The bound is a setting: raised past the header, the same kind of archive extracts."""
    monkeypatch.chdir(tmp_path)
    archive = pax_tar(tmp_path / "pets.tar.gz", 2_000_000)
    refused = run_stage("download", capsys, "data=folder", f"data.source={archive}")
    assert_one_line_error(refused, "data.max_tar_header_bytes=1,000,000")
    outcome = run_stage("download", capsys, "data=folder", f"data.source={archive}", "data.max_tar_header_bytes=3e6")
    assert outcome.code == 0, outcome
    assert (tmp_path / "data" / "raw" / "cat" / "0.jpg").read_bytes() == jpeg(1)


@pytest.mark.parametrize("value", ["0", "-1", "inf", "1e16"])
def test_the_header_bound_is_checked_first(tmp_path, monkeypatch, capsys, value):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pets.tar").write_bytes(b"")
    outcome = run_stage("download", capsys, "data=folder", "data.source=pets.tar", f"data.max_tar_header_bytes={value}")
    assert_one_line_error(outcome, "data.max_tar_header_bytes=", "must be a number in (0, 1e+15] (bytes)")
    assert [p.name for p in tmp_path.iterdir()] == ["pets.tar"]


class ZerosServer:
    """A local server whose every file is `size` zero bytes, with its Content-Length."""

    def __init__(self, size: int = 20_480) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                self.wfile.write(bytes(size))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/files/zeros.tar"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_an_http_body_of_zeros_is_not_an_empty_archive(tmp_path, monkeypatch, capsys):
    """Downloaded zeros read as an empty tar: the raw folder was replaced by an empty one, and the run exited 0.
    The download itself is the stage's own (data/downloads); everything else stays as it was."""
    monkeypatch.chdir(tmp_path)
    project_files(tmp_path)
    assert run_stage("download", capsys, "data=folder", "data.source=photos").code == 0
    before = snapshot(tmp_path)
    server = ZerosServer()
    try:
        with deadline(60):
            outcome = run_stage("download", capsys, "data=folder", f"data.source={server.url}")
    finally:
        server.close()
    assert_one_line_error(outcome, "zeros.tar is not a readable zip or tar archive")
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("data/downloads")}
    assert after == before
    assert len(list((tmp_path / "data" / "raw").rglob("*.jpg"))) == 6


@pytest.mark.parametrize(("override", "message"), [("data.classes=5", "data.classes=5"), ("data.exclude=[a]", "")])
def test_a_list_or_name_setting_given_the_wrong_kind_is_one_line(tmp_path, monkeypatch, capsys, override, message):
    """A section replaced by a single value is named (test_bad_config); a list replaced by one, or a file name by
    a list, is named too, before any work."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    outcome = run_stage("split", capsys, "data=folder", "data.workers=1", override)
    assert_one_line_error(outcome, message or override.split("=")[0])
    assert [p.name for p in tmp_path.iterdir()] == ["photos"]

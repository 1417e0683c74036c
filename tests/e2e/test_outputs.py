"""A stage replaces only the output folder it made itself, and no wait lasts for ever. The download, split and export
stages refuse, before any work, an output that names another stage's files, the project's own, a folder or file the
stage did not make, or a special file; a server that drips bytes is cut off; the learning-rate finder's length is
bounded. Each refusal: exit status 2, one line, and every file under the test's folder byte-identical after. The
stages run in this process (helpers.entry), as their entry scripts run them."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers.entry import assert_one_line_error, run_stage
from helpers.hostile import deadline, jpeg, make_special

from smallvision.errors import ConfigError
from smallvision.files import OUTPUT_MARKER, check_output_folder


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its bytes (None: a folder or special file), to compare before and after."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
        for p in sorted(root.rglob("*"))
    }


def project_files(root: Path) -> None:
    """Trained runs, a user's folder of files and a lone file, in a project folder: the victims."""
    for technique in ("baseline", "augment"):
        (root / "models" / technique).mkdir(parents=True)
        (root / "models" / technique / "best.ckpt").write_bytes(b"weights of " + technique.encode() * 100)
        (root / "models" / technique / "metrics.json").write_text('{"test_accuracy": 0.7}\n')
    (root / "mine").mkdir()
    (root / "mine" / "thesis.tex").write_text("years of work\n")
    (root / "notes.txt").write_text("a file\n")
    (root / "photos" / "cat").mkdir(parents=True)
    (root / "photos" / "dog").mkdir(parents=True)
    for i in range(3):
        (root / "photos" / "cat" / f"{i}.jpg").write_bytes(jpeg(i))
        (root / "photos" / "dog" / f"{i}.jpg").write_bytes(jpeg(10 + i))


STAGE_ARGS = {
    "export": ("paths.export", ()),
    "split": ("paths.prepared", ("data=folder", "data.workers=1")),
    "download": ("paths.raw", ("data=folder", "data.source=photos")),
}
REFUSALS = [
    ("models", "overlaps the train-baseline stage's"),  # the trained checkpoints and metrics under models/
    ("models/baseline", "overlaps the train-baseline stage's"),
    ("mine", "is a folder the {stage} stage did not make"),
    ("notes.txt", "is a file, not a folder"),
    ("src/smallvision", "overlaps the project's own"),
    ("conf", "overlaps the project's own"),
    (".", "is the project folder or holds it"),
]


@pytest.mark.parametrize("stage", list(STAGE_ARGS))
@pytest.mark.parametrize(("target", "message"), REFUSALS, ids=[t for t, _ in REFUSALS])
def test_an_output_that_is_not_the_stages_own_is_refused_before_any_work(
    tmp_path, monkeypatch, capsys, stage, target, message
):
    monkeypatch.chdir(tmp_path)
    project_files(tmp_path)
    before = snapshot(tmp_path)
    key, overrides = STAGE_ARGS[stage]
    outcome = run_stage(stage, capsys, *overrides, f"{key}={target}")
    assert_one_line_error(outcome, f"{key}={target}", message.format(stage=stage))
    assert snapshot(tmp_path) == before


def test_another_stages_folder_is_refused(tmp_path, monkeypatch, capsys):
    """The export stage may not take the split's folder, nor the split the download's."""
    monkeypatch.chdir(tmp_path)
    project_files(tmp_path)
    assert run_stage("download", capsys, "data=folder", "data.source=photos").code == 0
    before = snapshot(tmp_path)
    outcome = run_stage("export", capsys, "paths.export=data/raw")
    assert_one_line_error(outcome, "paths.export=data/raw overlaps")
    with pytest.raises(ConfigError, match="is the download stage's output folder; the split stage would replace it"):
        check_output_folder(tmp_path / "data" / "raw", "split")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("stage", list(STAGE_ARGS))
def test_a_special_file_as_the_output_is_refused_at_once(tmp_path, monkeypatch, capsys, stage):
    """Replacing a FIFO and opening it to clean up blocked for ever after the work: refused before it."""
    monkeypatch.chdir(tmp_path)
    project_files(tmp_path)
    make_special(tmp_path / "pipe", "fifo")
    before = snapshot(tmp_path)
    key, overrides = STAGE_ARGS[stage]
    with deadline(60):
        outcome = run_stage(stage, capsys, *overrides, f"{key}=pipe")
    assert_one_line_error(outcome, f"{key}=pipe is a FIFO (named pipe), not a folder")
    assert snapshot(tmp_path) == before


def test_the_stages_own_or_an_empty_folder_is_replaced(tmp_path, monkeypatch, capsys):
    """An empty folder is taken; the folder the stage made (its marker) is replaced on its next run, as DVC reruns
    it; the marker is not taken for data by the split."""
    monkeypatch.chdir(tmp_path)
    project_files(tmp_path)
    (tmp_path / "data" / "raw").mkdir(parents=True)
    first = run_stage("download", capsys, "data=folder", "data.source=photos")
    assert first.code == 0, first
    assert (tmp_path / "data" / "raw" / OUTPUT_MARKER).read_text() == "download\n"
    assert "download: 6 files" in first.out
    (tmp_path / "photos" / "cat" / "3.jpg").write_bytes(jpeg(3))
    (tmp_path / "photos" / "dog" / "3.jpg").write_bytes(jpeg(13))
    again = run_stage("download", capsys, "data=folder", "data.source=photos")
    assert again.code == 0 and "download: 8 files" in again.out, again
    fractions = ("data.split.train=0.5", "data.split.val=0.25", "data.split.test=0.25")
    split = run_stage("split", capsys, "data=folder", "data.workers=1", *fractions)
    assert split.code == 0, split
    assert OUTPUT_MARKER not in (tmp_path / "data" / "prepared" / "split_report.json").read_text()
    assert (tmp_path / "data" / "prepared" / OUTPUT_MARKER).read_text() == "split\n"
    assert run_stage("split", capsys, "data=folder", "data.workers=1", *fractions).code == 0


# --------------------------------------------------------------------------- waits with a deadline


class DrippingServer:
    """A local server that announces `size` bytes, then sends one byte every `every_s` seconds until closed; with
    `in_headers`, the bytes drip into a header line that never ends."""

    def __init__(self, size: int = 10_000, every_s: float = 0.1, in_headers: bool = False) -> None:
        self.stop, self.sent = threading.Event(), 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                if in_headers:
                    self.flush_headers()  # the status line and Content-Length, then a header that drips
                    self.wfile.write(b"X-Drip: ")
                else:
                    self.end_headers()
                try:
                    while server.sent < size and not server.stop.wait(every_s):
                        self.wfile.write(b"P")
                        self.wfile.flush()
                        server.sent += 1
                except OSError:  # the client hung up
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/files/drip.zip"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize(
    ("in_headers", "message", "left"),
    [
        (
            False,
            ["less than data.min_download_bytes_per_s=100", "drip.zip.part: run again to resume"],
            ["drip.zip.part"],
        ),
        (True, ["the server did not answer within data.download_rate_window_s=1 s"], []),
    ],
    ids=["body", "headers"],
)
def test_a_server_that_drips_is_cut_off(tmp_path, monkeypatch, capsys, in_headers, message, left):
    """One byte every 0.1 s never trips the 5 s read timeout; the pace floor (100 bytes/s over 1 s) cuts it off
    within seconds, in the body (what arrived is kept for a resume) as in the headers, and the raw folder is never
    made."""
    monkeypatch.chdir(tmp_path)
    server = DrippingServer(in_headers=in_headers)
    started = time.monotonic()
    try:
        with deadline(60):
            outcome = run_stage(
                "download",
                capsys,
                "data=folder",
                f"data.source={server.url}",
                "data.connect_timeout_s=5",
                "data.min_download_bytes_per_s=100",
                "data.download_rate_window_s=1",
            )
    finally:
        server.close()
    assert time.monotonic() - started < 10  # the window is 1 s: cut off after it, not after the 5 s read timeout
    assert_one_line_error(outcome, f"download of {server.url} stopped", *message)
    assert 0 < server.sent < 100
    found = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert found == ["data", "data/downloads", *(f"data/downloads/{name}" for name in left)]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.min_download_bytes_per_s=0", "data.min_download_bytes_per_s=0"),
        ("data.download_rate_window_s=-1", "data.download_rate_window_s=-1"),
    ],
)
def test_the_pace_settings_are_checked_first(tmp_path, monkeypatch, capsys, override, message):
    monkeypatch.chdir(tmp_path)
    outcome = run_stage("download", capsys, "data=folder", "data.source=http://127.0.0.1:9/x.zip", override)
    assert_one_line_error(outcome, message)
    assert list(tmp_path.iterdir()) == []


def test_the_learning_rate_finder_is_bounded(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    outcome = run_stage("lr_find", capsys, "preset=smoke", "logger.enabled=false", "lr_find.num_training=1000000")
    assert_one_line_error(outcome, "lr_find.num_training=1000000")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- sources that would replace folders


@pytest.mark.parametrize("name", ["%2e%2e%2fescaped.zip", "%2fetc%2fpasswd", "%2e", "%2e%2e", "a%5cb.zip"])
def test_a_url_whose_file_name_decodes_to_a_path_is_refused(tmp_path, monkeypatch, capsys, name):
    """The download's file name comes from the URL: decoded to `../x`, `/x` or `.` it would land outside the
    download folder, or replace the folder itself with a file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "downloads").mkdir(parents=True)
    (tmp_path / "data" / "downloads" / "earlier.zip").write_bytes(b"an earlier download")
    before = snapshot(tmp_path)
    outcome = run_stage("download", capsys, "data=folder", f"data.source=http://127.0.0.1:9/files/{name}")
    assert_one_line_error(outcome, "not a plain file name", "give a URL that ends in a file name")
    assert snapshot(tmp_path) == before


def test_a_file_of_zeros_is_not_an_empty_archive(tmp_path, monkeypatch, capsys):
    """tarfile reads zeros as an empty tar: the raw folder was replaced by an empty one, and the run exited 0."""
    monkeypatch.chdir(tmp_path)
    project_files(tmp_path)
    assert run_stage("download", capsys, "data=folder", "data.source=photos").code == 0
    (tmp_path / "zeros.tar").write_bytes(bytes(20480))
    before = snapshot(tmp_path)
    outcome = run_stage("download", capsys, "data=folder", "data.source=zeros.tar")
    assert_one_line_error(outcome, "zeros.tar is not a readable zip or tar archive")
    assert snapshot(tmp_path) == before

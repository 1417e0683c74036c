"""Hostile input the reliability tests make: special files (FIFO, socket, a link to a device), noise JPEGs, a
checkpoint as training writes one, an HTTP server whose response never ends, and a deadline so that a read that
blocks fails the test instead of hanging it."""

from __future__ import annotations

import io
import os
import signal
import socket
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from smallvision import networks


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in Path(root).rglob("*")}


def jpeg(seed: int, size: int = 24) -> bytes:
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(out, format="JPEG")
    return out.getvalue()


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging (a FIFO read blocks forever)."""

    def expired(*_):
        raise TimeoutError(f"still running after {seconds} s: it hangs")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def make_special(path: Path, kind: str) -> Path:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()  # the socket file stays
    else:  # a device, reached through a link: what /dev/zero as data.source reads
        path.symlink_to("/dev/zero")
    return path


SPECIAL_WORDS = {"fifo": "a FIFO (named pipe)", "socket": "a socket", "device": "a character device"}


def scratch_checkpoint(path: Path, classes=("cat", "dog"), size: int = 48) -> Path:
    """A checkpoint as training writes it, of an untrained small convnet."""
    from helpers.study import config, technique

    spec = networks.make_spec(technique(image_size=size, dropout=0.0), config().backbone, list(classes))
    net = networks.build_net(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"hyper_parameters": {"spec": spec}, "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, path
    )
    return path


class EndlessServer:
    """A local server whose response never ends (no Content-Length), or announces `announce` bytes."""

    def __init__(self, announce: int | None = None) -> None:
        server = self
        self.sent = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                if announce is not None:
                    self.send_header("Content-Length", str(announce))
                self.end_headers()
                try:
                    for _ in range(4096):  # 256 MB at most: the test fails long before, if the cap does not hold
                        self.wfile.write(b"\0" * 65536)
                        server.sent += 65536
                except OSError:  # the client hung up
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/endless.zip"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

"""Headless Chromium for the tests that look at a page the way a user does (skipped where it is not installed)."""

from __future__ import annotations

import shutil

import pytest

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND"  # no host name resolves: nothing on the network can be loaded


def chromium() -> str:
    """The browser's executable; skips the test where none is installed."""
    found = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if found is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    return found

"""The download and split entry scripts run as a user runs them, on generated images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

from smallvision.data.manifest import REPORT


def report_of(out: Path) -> dict:
    return json.loads((out / REPORT).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- the entry scripts


def run_script(script: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, str(ROOT / "pipelines" / script), *overrides, "hydra.run.dir=.", "hydra.output_subdir=null"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_download_and_split_scripts_end_to_end(tmp_path):
    common = ["data=synthetic", "data.synthetic.per_class=8", "data.synthetic.image_size=32"]
    done = run_script("download.py", *common, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = run_script("split.py", *common, "data.workers=1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "circle" in done.stdout and "dropped 0 files" in done.stdout
    assert report_of(tmp_path / "data" / "prepared")["total"] == {"train": 8, "val": 4, "test": 4}


def test_script_error_is_one_line_without_traceback(tmp_path):
    done = run_script("download.py", "data=folder", cwd=tmp_path)
    assert done.returncode == 2
    assert "data.source is not set" in done.stderr and "Traceback" not in done.stderr

"""Each DVC stage is a new Python process, so what an entry script imports at its start is paid by every stage: the
scripts load no library their path never runs (torch outside the stages that run networks, Lightning outside
training and the audit, timm outside pretrained backbones, scipy.stats outside the statistics)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import ROOT

# In one interpreter, in this order: what a script loads stays loaded for the next ones, so the lightest come first.
# export imports the network builders the training stages use (networks, models.backbones, models.weights,
# data.preprocess), so a from-scratch stage's timm-free start is checked there, without Lightning's import time.
PROBE = """
import json, runpy, sys
watched = ("torch", "lightning", "timm", "safetensors", "scipy.stats", "mlflow")
loaded = {}
for script in ("download", "split", "export"):
    runpy.run_path(f"pipelines/{script}.py", run_name="startup_probe")
    loaded[script] = [name for name in watched if name in sys.modules]
print(json.dumps(loaded))
"""


def test_entry_scripts_start_without_libraries_their_path_never_runs():
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["download"] == [], loaded  # the data stages: none of them
    assert loaded["split"] == [], loaded
    assert loaded["export"] == ["torch"], (
        loaded
    )  # a checkpoint is rebuilt with torch alone; timm only for a pretrained base

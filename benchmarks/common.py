"""Shared pieces of the benchmarks: the machine, a timer that measures peak memory, the dev-archive workspace.

Benchmarks run on demand (never in the test suite) and each prints its figure next to a reference measured
in the same run on the same machine, as soon as it is measured (a stopped run still shows what it measured).
Results, with the machine and what its CPU offers (hardware.py), are appended to benchmarks/results/<name>.json.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:  # hardware imports torch and Lightning: only the functions that need it import it
    from smallvision.schema import Settings

    from hardware import Cpu

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEV_ARCHIVE = ROOT.parent / "shared" / "data" / "dogs-vs-cats-dev.zip"
# The dev archive's Dog class has 1,998 usable photos (one truncated, one duplicate), so 1000/500/498.
DEV_SPLIT = ("data.split.train=1000", "data.split.val=500", "data.split.test=498")


def say(*parts: object) -> None:
    """Print now: a figure shows as soon as it is measured, even when the output goes to a pipe or a file."""
    print(*parts, flush=True)


class Progress:
    """A line every `every` of `total` steps of a long phase, with the seconds since it began."""

    def __init__(self, label: str, total: int, every: int = 10) -> None:
        self.label, self.total, self.every, self.done = label, total, every, 0
        self.started = time.perf_counter()
        say(f"  {label}: {total} steps")

    def step(self) -> None:
        self.done += 1
        if self.done % self.every == 0 or self.done == self.total:
            say(f"    {self.label}: {self.done}/{self.total} in {time.perf_counter() - self.started:.0f} s")


def machine(offers: Cpu | None = None) -> dict:
    """What the figures depend on: CPU, what it offers (`offers`, default: detected), cores, torch, and the load
    average when they were saved."""
    import torch

    from hardware import detect

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_offers": (offers or detect()).record(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


@dataclass
class Measured:
    """One command's wall time, peak memory and exit status."""

    wall_s: float
    # Sampled every 0.5 s with psutil. Not ru_maxrss: a forked child inherits its parent's peak RSS in it.
    peak_rss_mb: float  # the largest single process of the tree
    peak_tree_rss_mb: float  # the whole process tree at its peak (pages shared between processes counted twice)
    returncode: int
    output: str

    def summary(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "output"}


def run_measured(cmd: list[str], cwd: Path) -> Measured:
    """Run `cmd`, returning its wall time, exit code, output, and peak RSS (largest process and whole tree).

    This interpreter's bin/ goes first on PATH, so the stages' `python` is the one running the benchmark, and
    `cwd`/src (a workspace's own copy of the code) first on PYTHONPATH: not the editable install's, which may
    change while a long benchmark runs.
    """
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(cwd / "src"), os.environ.get("PYTHONPATH")])),
    }
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, done = {"process": 0, "tree": 0}, threading.Event()

    def sample() -> None:
        parent = psutil.Process(proc.pid)
        while not done.wait(0.5):
            try:
                tree = [parent, *parent.children(recursive=True)]
            except psutil.Error:  # the command has ended
                continue
            rss = []
            for p in tree:
                try:
                    rss.append(p.memory_info().rss)
                except psutil.Error:  # ended between listing and reading
                    pass
            if rss:
                peak["process"], peak["tree"] = max(peak["process"], max(rss)), max(peak["tree"], sum(rss))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.stdout.read()  # drains the pipe until the whole tree closes it
    proc.wait()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    return Measured(
        round(wall, 2), round(peak["process"] / 2**20, 1), round(peak["tree"] / 2**20, 1), proc.returncode, output
    )


def dev_workspace(workdir: Path, *overrides: str, source: Path = DEV_ARCHIVE, refresh_code: bool = False) -> Path:
    """A git + DVC copy of the project in `workdir` whose params.yaml points the study at the dev archive.
    With `refresh_code`, an existing copy gets this checkout's code and config (its data and models stay)."""
    from workspace import compose_params, copy_project

    if not source.is_file():
        sys.exit(f"the dev archive {source} is missing: pass --source /path/to/dogs-vs-cats-dev.zip")
    if not (workdir / "dvc.yaml").exists():
        workdir.mkdir(parents=True, exist_ok=True)
        copy_project(workdir)
    elif refresh_code:
        for name in ("conf", "pipelines", "src"):
            shutil.rmtree(workdir / name)
        copy_project(workdir, code_only=True)
    compose_params(workdir, "data=folder", f"data.source={source}", *DEV_SPLIT, "trainer.progress=false", *overrides)
    return workdir


def project_config(*overrides: str) -> Settings:
    """The project's composed config (conf/) with Hydra overrides, as the typed settings an entry script builds."""
    from hydra import compose, initialize_config_dir

    from smallvision.entrypoints import load_settings

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return load_settings(compose("config", overrides=list(overrides)))


def dev_split(workdir: Path, source: Path = DEV_ARCHIVE) -> tuple[Path, Path]:
    """The dev archive extracted to workdir/raw and split (1000/500/498 per class) into workdir/prepared, once."""
    from smallvision.data.archives import extract_archive
    from smallvision.data.split import prepare_split
    from smallvision.schema import Split

    raw, prepared = workdir / "raw", workdir / "prepared"
    if not (prepared / "manifest.csv").exists():
        extract_archive(source, raw, max_extract_bytes=4e9, max_header_bytes=1e6, progress=False)
        split = {kv.split("=")[0].rsplit(".", 1)[1]: int(kv.split("=")[1]) for kv in DEV_SPLIT}
        data = project_config().data
        prepare_split(
            raw,
            prepared,
            split=Split(**split),
            seed=42,
            classes=None,
            workers=data.workers,
            limits=data.image_limits,
            progress=False,
        )
    return raw, prepared


def imagefolder(records, indices, folder: Path) -> Path:
    """`records[indices]` laid out as torchvision's ImageFolder wants them: folder/<class>/<file> symlinks."""
    if not folder.exists():
        for r in (records[i] for i in indices):
            link = folder / r.label / Path(r.path).name
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(r.file, link)
    return folder


def save(name: str, result: dict, cpu: Cpu | None = None) -> Path:
    """Append one run's result to benchmarks/results/<name>.json (a list, newest last) and print where."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    runs = json.loads(path.read_text()) if path.exists() else []
    runs.append({"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(cpu), **result})
    path.write_text(json.dumps(runs, indent=2) + "\n")
    say(f"saved to {path.relative_to(ROOT)}")
    return path

"""The GPU check, run by gpu_check.sh (which first makes sure there is a GPU): on a machine with one or more NVIDIA
GPUs, in under 8 minutes, it runs

1. the smoke study with trainer=gpu: `dvc repro` in a fresh copy of the project (generated images);
2. the quick study on the dev archive with trainer=gpu, stage by stage (`dvc repro --single-item`), timed;
3. the training-throughput benchmark on the GPU (bench_train_throughput.py --device cuda --skip-variants);
4. with two or more GPUs, the smoke study with trainer=ddp on all of them (fp32), then each checkpoint tested again
   on one GPU (eval_checkpoint.py): the test metrics must be equal, image for image, as DDP evaluation is exact
   (feature_extract is left out: it was tested on cached features, not on the images);

and prints one table. Exit status 0 when every check passed, 1 otherwise, 2 when it cannot run at all.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from bench_study import DVC, stage_names, test_accuracies

from common import DEV_ARCHIVE, ROOT, dev_workspace, machine, run_measured

BUDGET_S = 8 * 60
EXACT_ON_IMAGES = ("baseline", "augment", "fine_tune")  # techniques whose test step reads images
DDP_STAGES = ("train-baseline", "augment", "fine-tune")  # and what they need (split, feature-extract)


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []
        self.failed = False

    def add(self, check: str, result: str, seconds: float | None = None, ok: bool = True) -> None:
        self.rows.append((check, result if ok else f"FAILED: {result}", "" if seconds is None else f"{seconds:.1f} s"))
        self.failed |= not ok
        print(f"{check}: {self.rows[-1][1]} {self.rows[-1][2]}", flush=True)

    def show(self) -> str:
        lines = ["| check | result | wall time |", "|---|---|---|"]
        return "\n".join(lines + [f"| {c} | {r} | {t} |" for c, r, t in self.rows])


def tail(output: str) -> str:
    """A failed command's last lines, fit for one table cell."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return " / ".join(lines[-3:]).replace("|", "/")[-400:]


def smoke_project(workdir: Path, *overrides: str) -> Path:
    """A fresh copy of the project set to the smoke preset with `overrides`."""
    from workspace import compose_params, copy_project

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    copy_project(workdir)
    compose_params(workdir, "preset=smoke", *overrides)
    return workdir


def accuracies(project: Path) -> str:
    found = test_accuracies(project)
    return ", ".join(f"{t} {100 * m['test_accuracy']:.0f} %" for t, m in found.items())


def smoke_study(table: Table, workdir: Path) -> None:
    project = smoke_project(workdir / "smoke", "trainer=gpu")
    m = run_measured([*DVC, "repro"], project)
    table.add(
        "smoke study, trainer=gpu (`dvc repro`)",
        accuracies(project) if not m.returncode else tail(m.output),
        m.wall_s,
        not m.returncode,
    )


def quick_study(table: Table, workdir: Path, archive: Path) -> None:
    project = workdir / "quick"
    shutil.rmtree(project, ignore_errors=True)
    dev_workspace(project, "preset=quick", "trainer=gpu", source=archive)
    total = 0.0
    for stage in stage_names(project):
        m = run_measured([*DVC, "repro", "--single-item", stage], project)
        total += m.wall_s
        table.add(
            f"quick study, trainer=gpu: `{stage}`",
            "ran" if not m.returncode else tail(m.output),
            m.wall_s,
            not m.returncode,
        )
        if m.returncode:
            return
    table.add("quick study, trainer=gpu: all stages, test accuracy", accuracies(project), total)


def throughput(table: Table, archive: Path) -> None:
    cmd = [sys.executable, "bench_train_throughput.py", "--device", "cuda", "--skip-variants", "--dev-archive", archive]
    m = run_measured([str(c) for c in cmd], ROOT / "benchmarks")
    if m.returncode:
        table.add("training throughput (augment, 150 px, batch 32)", tail(m.output), m.wall_s, ok=False)
        return
    result = json.loads((ROOT / "benchmarks" / "results" / "train-throughput.json").read_text())[-1]
    rates = ", ".join(f"{name.split(' (')[0]} {rate:.0f} img/s" for name, rate in result["images_per_s"].items())
    table.add(
        "training throughput on the GPU (augment, 150 px, batch 32)",
        f"{rates}: {result['ratio_vs_reference']}x the reference; {result['fraction_of_trained_peak']:.0%} of the "
        f"{result['peak_precision']} matmul peak ({result['matmul_peak_gflops'][result['peak_precision']] / 1000:.0f} "
        "TFLOP/s), the precision that trained",
        m.wall_s,
    )


def ddp_exact(table: Table, workdir: Path, gpus: int) -> None:
    fp32 = "trainer.precision=32-true"  # bf16's rounding could tip a borderline image between batch shapes
    project = smoke_project(workdir / "ddp", "trainer=ddp", fp32)
    m = run_measured([*DVC, "repro", *DDP_STAGES], project)
    result = accuracies(project) if not m.returncode else tail(m.output)
    table.add(
        f"smoke study, trainer=ddp on {gpus} GPUs, fp32 ({', '.join(DDP_STAGES)})", result, m.wall_s, not m.returncode
    )
    if m.returncode:
        return
    for technique in EXACT_ON_IMAGES:
        cmd = [sys.executable, "eval_checkpoint.py", str(project), technique, "trainer=gpu", fp32]
        e = run_measured(cmd, ROOT / "benchmarks")
        found = next((json.loads(line) for line in reversed(e.output.splitlines()) if line.startswith("{")), None)
        summary = (
            f"{found['recorded']['test_correct']}/{found['recorded']['test_images']} correct on {gpus} GPUs, "
            f"{found['evaluated']['test_correct']}/{found['evaluated']['test_images']} on one"
            if found
            else tail(e.output)
        )
        table.add(f"`{technique}` test metrics, DDP = one GPU, image for image", summary, e.wall_s, e.returncode == 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev-archive", type=Path, default=DEV_ARCHIVE, help=f"default: {DEV_ARCHIVE}")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/smallvision-gpu-check"))
    args = parser.parse_args()
    import torch

    gpus = torch.cuda.device_count()
    if not gpus:
        sys.exit(
            _fail(
                "PyTorch sees no CUDA GPU (a CPU-only torch build, or a driver older than its CUDA "
                f"{torch.version.cuda}?): install the CUDA build of torch for this driver"
            )
        )
    if not args.dev_archive.is_file():
        sys.exit(
            _fail(f"the dev archive {args.dev_archive} is missing: pass --dev-archive /path/to/dogs-vs-cats-dev.zip")
        )
    started, table = time.perf_counter(), Table()
    about = machine()
    table.add("machine", f"{gpus} x {about['gpu']}, torch {about['torch']}, {about['cores']} CPU cores")
    smoke_study(table, args.workdir)
    quick_study(table, args.workdir, args.dev_archive.resolve())
    throughput(table, args.dev_archive.resolve())
    if gpus >= 2:
        ddp_exact(table, args.workdir, gpus)
    else:
        table.add("DDP check", "skipped: needs two or more GPUs")
    total = time.perf_counter() - started
    table.add("whole check", f"{total / 60:.1f} min (target < {BUDGET_S // 60} min)", total, total < BUDGET_S)
    print("\n" + table.show())
    sys.exit(1 if table.failed else 0)


def _fail(message: str) -> int:
    print(f"gpu_check: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    main()

"""Benchmarks 2, 4 and 5: the whole study on the dev archive, stage by stage, then DVC's no-op and one-change reruns.

    python benchmarks/bench_study.py --preset quick            # ~15-30 min on a 2-core CPU
    python benchmarks/bench_study.py --preset quick --reruns-only  # only 4, on the workspace of an earlier run
    python benchmarks/bench_study.py --preset default --no-reruns  # 2 and 5 for the book's epochs (~2 h)

Each stage runs as `dvc repro --single-item <stage>` in a fresh copy of the project (so nothing is cached),
timed, with its peak memory. Then: `dvc repro` with nothing changed (the no-op, against `dvc status` as the
reference: the least DVC can do), and `dvc repro` after changing only the fine-tune learning rate, checking that
exactly fine-tune and visualize rerun.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

import yaml

from common import dev_workspace, run_measured, save, say

DVC = [sys.executable, "-m", "dvc"]
TARGETS = {"quick": 15 * 60, "playbook": 45 * 60}  # seconds: the presets' time goals on a 2-core CPU (README, Presets)
NOOP_TARGET_S, RSS_TARGET_MB = 5.0, 4096
RERUN_EXPECTED = ["fine-tune", "visualize"]


def stage_names(project: Path) -> list[str]:
    return list(yaml.safe_load((project / "dvc.yaml").read_text())["stages"])


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def test_accuracies(project: Path) -> dict:
    """technique -> test accuracy and its 95 % interval, from models/<technique>/metrics.json."""
    out = {}
    for metrics in sorted(project.glob("models/*/metrics.json")):
        m = json.loads(metrics.read_text())
        out[m["technique"]] = {
            k: m[k] for k in ("test_accuracy", "ci95_low", "ci95_high", "test_images", "best_epoch", "wall_time_s")
        }
        print(
            f"{m['technique']:16s} test accuracy {100 * m['test_accuracy']:.1f} % "
            f"({100 * m['ci95_low']:.1f}-{100 * m['ci95_high']:.1f}) on {m['test_images']} images",
            flush=True,
        )
    return out


def run_study(project: Path, start_at: str | None = None) -> list[dict]:
    rows = []
    names = stage_names(project)
    for stage in names[names.index(start_at) :] if start_at else names:
        say(f"{stage}: running")  # a stage can run for an hour: its figures print when it ends
        m = run_measured([*DVC, "repro", "--single-item", stage], project)
        print(
            f"{stage:16s} {m.wall_s:8.1f} s   peak RSS {m.peak_rss_mb:7.0f} MB (tree {m.peak_tree_rss_mb:.0f} MB)",
            flush=True,
        )
        if m.returncode:
            sys.exit(f"stage {stage} failed:\n{m.output[-4000:]}")
        rows.append({"stage": stage, **m.summary()})
    return rows


def reruns(project: Path, preset: str, lr_overrides: list[str]) -> dict:
    status = [run_measured([*DVC, "status"], project) for _ in range(3)]
    noop = [run_measured([*DVC, "repro"], project) for _ in range(3)]
    if any(ran_stages(m.output) for m in noop):
        sys.exit("the no-op dvc repro reran a stage: " + ", ".join(ran_stages(noop[0].output)))
    noop_s, status_s = statistics.median(m.wall_s for m in noop), statistics.median(m.wall_s for m in status)
    print(
        f"no-op dvc repro: {noop_s:.2f} s (median of 3; target <= {NOOP_TARGET_S} s); "
        f"dvc status: {status_s:.2f} s; ratio {noop_s / status_s:.2f}",
        flush=True,
    )

    dev_workspace(project, f"preset={preset}", *lr_overrides)
    changed = run_measured([*DVC, "repro"], project)
    stages = ran_stages(changed.output)
    print(
        f"after changing only techniques.fine_tune.optimizer.lr: reran {stages} in {changed.wall_s:.0f} s "
        f"(expected {RERUN_EXPECTED})",
        flush=True,
    )
    if changed.returncode:
        sys.exit(f"the rerun failed:\n{changed.output[-4000:]}")
    return {
        "noop_repro_s": noop_s,
        "noop_runs_s": [m.wall_s for m in noop],
        "status_s": status_s,
        "noop_over_status": round(noop_s / status_s, 2),
        "lr_change_reran": stages,
        "lr_change_only_expected": stages == RERUN_EXPECTED,
        "lr_change_s": changed.wall_s,
        "lr_change_peak_rss_mb": changed.peak_rss_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--workdir", type=Path, default=None, help="default: /tmp/smallvision-bench-<preset>")
    parser.add_argument("--reruns-only", action="store_true", help="skip the study; the workspace must hold one")
    parser.add_argument(
        "--no-reruns",
        action="store_true",
        help="skip benchmark 4 (its one-change rerun retrains fine-tune: 100 epochs in the default study)",
    )
    parser.add_argument("--new-lr", default="5.0e-06", help="the fine-tune learning rate of the one-change rerun")
    parser.add_argument("--override", action="append", default=[], help="extra Hydra overrides for the study")
    parser.add_argument(
        "--start-at",
        metavar="STAGE",
        help="resume the study in the workspace from STAGE on (the "
        "stages before it finished there): the workspace first gets this checkout's code and config",
    )
    args = parser.parse_args()
    import hardware  # here: gpu_check imports this module before it has imported torch

    # The stages pick their own precision (`trainer.precision`) from what this CPU offers; it is recorded here.
    say(hardware.detect().describe())
    project = args.workdir or Path(f"/tmp/smallvision-bench-{args.preset}")
    result: dict = {"preset": args.preset, "workdir": str(project), "overrides": args.override}
    if not args.reruns_only:
        has_run = (project / "dvc.lock").exists()
        if has_run and not args.start_at:
            sys.exit(f"{project} already holds a run: remove it, or pass --reruns-only or --start-at")
        if args.start_at and not has_run:
            sys.exit(f"{project} holds no run to resume")
        dev_workspace(project, f"preset={args.preset}", *args.override, refresh_code=bool(args.start_at))
        stages = run_study(project, args.start_at)
        result["started_at"] = args.start_at
        total = round(sum(s["wall_s"] for s in stages), 1)
        peak = max(s["peak_rss_mb"] for s in stages)
        target = TARGETS.get(args.preset)
        what = f"stages from {args.start_at} on" if args.start_at else "whole study"
        print(
            f"{what}: {total:.0f} s = {total / 60:.1f} min"
            + (f" (target {target / 60:.0f} min: {total / target:.2f}x the target)" if target else "")
            + f"; largest stage RSS {peak:.0f} MB (target <= {RSS_TARGET_MB} MB)",
            flush=True,
        )
        result.update(
            stages=stages, total_s=total, peak_rss_mb=peak, target_s=target, accuracy=test_accuracies(project)
        )  # before the one-change rerun replaces fine-tune's
    if not args.no_reruns:
        lr = [*args.override, f"techniques.fine_tune.optimizer.lr={args.new_lr}"]
        result["reruns"] = reruns(project, args.preset, lr)
    save(f"study-{args.preset}", result)


if __name__ == "__main__":
    main()

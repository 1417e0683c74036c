"""Helpers shared by the tests: `study` composes configs and prepares generated datasets for training tests,
`project` copies the project and runs its commands in subprocesses (DVC, the entry scripts), `entry` runs an entry
script's own main in this process (`entry_script` loads one) (exit status and stderr as a user sees them), `hostile` makes hostile input
(special files, an endless HTTP response, a checkpoint)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: conf/, pipelines/, src/, benchmarks/

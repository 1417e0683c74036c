"""Helpers shared by the tests: `study` composes configs and prepares generated datasets for training tests,
`project` copies the project and runs its commands in subprocesses (DVC, the entry scripts)."""

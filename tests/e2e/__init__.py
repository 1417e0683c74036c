"""End-to-end tests: the entry scripts run as a user runs them, `dvc repro`, signals, DDP, a browser."""

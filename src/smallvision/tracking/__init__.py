"""MLflow tracking for the study: one study (parent) run, one child run per technique training job, and the
report's figures on them; a store that fails only warns (see `tracker`)."""

from smallvision.provenance import git_commit
from smallvision.tracking.from_files import log_from_metrics_files
from smallvision.tracking.lightning_logger import lightning_logger
from smallvision.tracking.store import flatten, resolve_tracking_uri
from smallvision.tracking.study_runs import ROLE_TAG, STUDY_ID_TAG, STUDY_KEY_TAG
from smallvision.tracking.tracker import COMPARISON_FILE, StudyTracker, study_tracker

__all__ = [
    "COMPARISON_FILE",
    "ROLE_TAG",
    "STUDY_ID_TAG",
    "STUDY_KEY_TAG",
    "StudyTracker",
    "flatten",
    "git_commit",
    "lightning_logger",
    "log_from_metrics_files",
    "resolve_tracking_uri",
    "study_tracker",
]

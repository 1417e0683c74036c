"""MLflow tracking for the study: one study (parent) run, one child run per technique training job with its data,
config and network, the registry's champion, and the report's figures on them; a store that fails only warns (see
`tracker`)."""

import os

# before MLflow is first imported: its telemetry would try config.mlflow-telemetry.io on import (offline, silently
# failing); the project runs offline and sends nothing. A user's own setting wins.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from smallvision.provenance import git_commit
from smallvision.tracking.inputs import log_config, log_dataset
from smallvision.tracking.lightning_logger import lightning_logger
from smallvision.tracking.models import (
    CHAMPION,
    OUTPUT_TAG,
    load_classifier,
    log_network,
    update_champion,
)
from smallvision.tracking.publish import log_results, publish_folder, technique_run
from smallvision.tracking.store import flatten, resolve_tracking_uri
from smallvision.tracking.study_runs import ROLE_TAG, STUDY_ID_TAG, STUDY_KEY_TAG
from smallvision.tracking.tracker import COMPARISON_FILE, StudyTracker, study_tracker

__all__ = [
    "CHAMPION",
    "COMPARISON_FILE",
    "OUTPUT_TAG",
    "ROLE_TAG",
    "STUDY_ID_TAG",
    "STUDY_KEY_TAG",
    "StudyTracker",
    "flatten",
    "git_commit",
    "lightning_logger",
    "load_classifier",
    "log_config",
    "log_dataset",
    "log_network",
    "log_results",
    "publish_folder",
    "resolve_tracking_uri",
    "study_tracker",
    "technique_run",
    "update_champion",
]

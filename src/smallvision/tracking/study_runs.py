"""The MLflow runs of one study, found and created through an explicit `MlflowClient`: the experiment, the study
(parent) run found again by a tag, and one child run per technique training job.

Each training stage is its own process, so the parent is found again through a tag rather than passed in memory:
the caller builds a `study_key` (e.g. "<study>/<dataset>/<manifest sha[:12]>", or one derived from a Hydra sweep
dir) and the newest parent with that key is reused. The explicit client, never the fluent `mlflow.start_run`
stack, lets a Lightning `MLFlowLogger` log into the same child run at the same time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE
from mlflow.utils.validation import MAX_PARAMS_TAGS_PER_BATCH

from smallvision.tracking.store import batches, param_value

STUDY_KEY_TAG = "smallvision.study_key"
# The key may hold any character, but MLflow filter strings cannot escape quotes reliably,
# so parents are looked up by a hex digest of the key kept in a second tag.
STUDY_ID_TAG = "smallvision.study_id"
ROLE_TAG = "smallvision.role"
# What the MLflow UI reads as an experiment's kind ("Machine learning"); the GenAI kind is the UI's default.
EXPERIMENT_KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
ROLE_STUDY, ROLE_TECHNIQUE = "study", "technique"


class StudyRuns:
    """The experiment, the study run with `study_key` (the newest, created when there is none) and its children.

    Every method talks to the store and may raise any store or transport error; `StudyTracker` guards them.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        study_key: str,
        study_name: str,
        tags: Mapping[str, str],
        artifact_location: str | None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.study_key = study_key
        self.study_name = study_name
        self.tags = dict(tags)
        self.artifact_location = artifact_location
        self.study_id = hashlib.sha256(study_key.encode("utf-8")).hexdigest()[:32]
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self.parent_run_id: str | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)  # a SQLite store migrates here
        return self._client

    @property
    def experiment_id(self) -> str | None:
        """The experiment's id once it was found or created."""
        return self._experiment_id

    def experiment(self) -> str:
        """The experiment's id; it is created, or tagged when it exists, as a model-training experiment."""
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment_name)
            if found is not None and found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            if found is not None:
                self._experiment_id = found.experiment_id
                if found.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING:
                    self.client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
            else:
                try:
                    self._experiment_id = self.client.create_experiment(
                        self.experiment_name,
                        artifact_location=self.artifact_location,
                        tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING},
                    )
                except MlflowException:  # a parallel sweep job created it first
                    again = self.client.get_experiment_by_name(self.experiment_name)
                    if again is None:
                        raise
                    self._experiment_id = again.experiment_id
        return self._experiment_id

    def parent(self) -> str:
        """The newest study run with this key, created when there is none."""
        if self.parent_run_id is None:
            experiment_id = self.experiment()
            found = self.client.search_runs(
                [experiment_id],
                filter_string=f"tags.`{STUDY_ID_TAG}` = '{self.study_id}' and tags.`{ROLE_TAG}` = '{ROLE_STUDY}'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
            if found:
                self.parent_run_id = found[0].info.run_id
            else:
                run = self.client.create_run(
                    experiment_id,
                    run_name=self.study_name,
                    tags={
                        **self.tags,
                        STUDY_KEY_TAG: self.study_key,
                        STUDY_ID_TAG: self.study_id,
                        ROLE_TAG: ROLE_STUDY,
                        # the UI's Source column: what makes the study (its stages), and for a technique its stage
                        MLFLOW_SOURCE_NAME: "dvc.yaml",
                        MLFLOW_SOURCE_TYPE: "LOCAL",
                    },
                )
                self.parent_run_id = run.info.run_id
        return self.parent_run_id

    def start_child(self, technique: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        """A new technique run under the study run (marked running again), with `params` logged."""
        parent = self.parent()
        if self.client.get_run(parent).info.status != RunStatus.to_string(RunStatus.RUNNING):
            self.client.update_run(parent, status=RunStatus.to_string(RunStatus.RUNNING))
        run = self.client.create_run(
            self.experiment(),
            run_name=technique,
            tags={
                **self.tags,
                "technique": technique,
                **tags,
                MLFLOW_PARENT_RUN_ID: parent,
                STUDY_KEY_TAG: self.study_key,
                ROLE_TAG: ROLE_TECHNIQUE,
                MLFLOW_SOURCE_NAME: f"pipelines/train.py technique={technique}",
                MLFLOW_SOURCE_TYPE: "LOCAL",
            },
        )
        run_id = run.info.run_id
        param_list = [Param(key, param_value(value)) for key, value in params.items()]
        for batch in batches(param_list, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, params=batch)
        return run_id

    def end(self, run_id: str, status: str) -> None:
        """Set the child's final status; the parent mirrors the outcome of its latest job."""
        self.client.set_terminated(run_id, status)
        if self.parent_run_id is not None:
            self.client.set_terminated(self.parent_run_id, status)

    def find_child(self, technique: str) -> str | None:
        """The newest run of `technique` under the study run (tags mlflow.parentRunId and technique)."""
        parent = self.parent()
        if "'" in technique:
            return None  # cannot be quoted in a filter string; technique names are identifiers anyway
        found = self.client.search_runs(
            [self.experiment()],
            filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent}' and tags.technique = '{technique}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return found[0].info.run_id if found else None

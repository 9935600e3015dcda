"""MLflow's model registry: a logged model as a new version of a registered model.

A training outside a sweep registers its model under the experiment's name, so
``models:/<experiment>/latest`` is the newest training's model (MLflow reserves ``latest``
for that; a sweep's best carries the alias ``champion``). MLflow's own "Successfully
registered" lines go to the job's log file, not the console.
"""

from __future__ import annotations

import contextlib
import io
import logging

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)


def register(tracking_uri: str, model_uri: str, name: str,
             tags: dict[str, str] | None = None) -> ModelVersion:
    """``model_uri`` as the next version of the registered model ``name`` (created if new)."""
    mlflow.set_tracking_uri(tracking_uri)
    with contextlib.redirect_stderr(io.StringIO()) as said:  # MLflow prints, not logs, these
        version = mlflow.register_model(model_uri, name, tags=tags)
    for line in said.getvalue().splitlines():
        log.info("%s", line, extra={"console": False})
    return version


def register_run_model(tracking_uri: str, run_id: str, name: str) -> ModelVersion | None:
    """The model ``run_id`` logged (its ``model_uri`` tag) as a new version of ``name``;
    None where the run logged no model."""
    model_uri = MlflowClient(tracking_uri).get_run(run_id).data.tags.get("model_uri")
    if not model_uri:
        return None
    return register(tracking_uri, model_uri, name, tags={"run_id": run_id})

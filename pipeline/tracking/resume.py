"""Resuming a sweep: a job's earlier attempt under the same parent, and what to do with it.

A complete attempt (FINISHED, with its test metrics and its model) is skipped; an
unfinished one (killed, lost with its node, or stopped anywhere between its first
checkpoint and its last upload) continues in its own run from its newest checkpoint; one
that failed, or died before any checkpoint, is run again and marked superseded.
"""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run
from omegaconf import DictConfig

from pipeline.tracking.handoff import sweep_info
from pipeline.tracking.naming import config_hash
from pipeline.tracking.store import open_store

# Where a run's checkpoints are, newest first: what a resumed job continues from.
RESUME_FILES = ("interrupted.ckpt", "last.ckpt")


def previous_attempt(cfg: DictConfig) -> Run | None:
    """In a resumed sweep (``sweep_id=...``), this job's latest earlier child run: the one
    with the same config hash that no later attempt superseded; else None."""
    info = sweep_info()
    if info is None or not info.resume:
        return None
    open_store(cfg.logger.tracking_uri)
    runs = MlflowClient(cfg.logger.tracking_uri).search_runs(
        [info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{info.run_id}' "
                      f"and tags.config_hash = '{config_hash(cfg)}'",
        order_by=["attributes.start_time DESC"],
    )
    runs = [r for r in runs if "superseded_by" not in r.data.tags]
    return runs[0] if runs else None


def complete(run: Run | None) -> bool:
    """FINISHED with everything a run owes: test metrics and a logged model."""
    return (run is not None and run.info.status == "FINISHED" and "model_uri" in run.data.tags
            and any(k.startswith("test/") for k in run.data.metrics))


def resume_checkpoint(run: Run) -> str | None:
    """The newest checkpoint an unfinished run left (``interrupted`` or ``last``), or None."""
    folder = Path(run.data.tags.get("checkpoint_dir") or "/nonexistent")
    found = [folder / name for name in RESUME_FILES if (folder / name).is_file()]
    return str(max(found, key=lambda p: p.stat().st_mtime)) if found else None


def supersede(client: MlflowClient, old: Run, new_run_id: str) -> None:
    """Mark an earlier attempt that is run again from scratch: closed KILLED if a SIGKILL
    left it RUNNING, and left out of the sweep's summary."""
    client.set_tag(old.info.run_id, "superseded_by", new_run_id)
    if old.info.status == "RUNNING":
        client.set_terminated(old.info.run_id, "KILLED")

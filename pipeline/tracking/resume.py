"""Resuming a sweep: a job's earlier attempt under the same parent, and what to do with it.

An earlier attempt is one of the same configuration in a sweep resumed with ``sweep_id=``,
or, in any sweep, one of this very job (its own folder): a job that ran again because its
launcher requeued it (submitit after a preemption or a time-out, SLURM after a node failure).
A complete attempt (FINISHED, with its test metrics and its model) is skipped; an
unfinished one (killed, lost with its node, stopped by a full disk, or anywhere between its
first checkpoint and its last upload) continues in its own run from its newest checkpoint
that loads; one that failed, or left no checkpoint that loads, is run again and marked
superseded.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run
from omegaconf import DictConfig

from pipeline.checkpoints import newest_loadable
from pipeline.tracking.handoff import sweep_info
from pipeline.tracking.naming import config_hash
from pipeline.tracking.store import open_store

log = logging.getLogger(__name__)
# Where a run's checkpoints are, newest first: what a resumed job continues from.
RESUME_FILES = ("interrupted.ckpt", "last.ckpt")


def previous_attempt(cfg: DictConfig) -> Run | None:
    """This job's latest earlier child run in a sweep: the one with the same config hash
    that no later attempt superseded, in a resumed sweep (``sweep_id=...``) from any earlier
    sweep folder, otherwise only from this job's own folder (the job was requeued); else
    None. Outside a sweep: None."""
    info = sweep_info()
    if info is None:
        return None
    open_store(cfg.logger.tracking_uri)
    runs = MlflowClient(cfg.logger.tracking_uri).search_runs(
        [info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{info.run_id}' "
                      f"and tags.config_hash = '{config_hash(cfg)}'",
        order_by=["attributes.start_time DESC"],
    )
    here = str(cfg.paths.run_dir)  # the ``job_dir`` tag of this job's (replicate's) runs
    runs = [r for r in runs if "superseded_by" not in r.data.tags
            and (info.resume or r.data.tags.get("job_dir") == here)]
    return runs[0] if runs else None


def complete(run: Run | None) -> bool:
    """FINISHED with everything a run owes: test metrics and a logged model."""
    return (run is not None and run.info.status == "FINISHED" and "model_uri" in run.data.tags
            and any(k.startswith("test/") for k in run.data.metrics))


def resumable(run: Run | None) -> bool:
    """An earlier attempt that continues from its checkpoint: unfinished, or FAILED only
    because the disk was full (``error.disk_full``); any other failure is run again."""
    return run is not None and (run.info.status != "FAILED"
                                or run.data.tags.get("error.disk_full") == "true")


def resume_checkpoint(run: Run) -> str | None:
    """The newest checkpoint an unfinished run left (``interrupted`` or ``last``) that loads,
    or None (then the replicate starts over, in a new run). A damaged one is set aside with
    one line and the next newest is tried."""
    folder = Path(run.data.tags.get("checkpoint_dir") or "/nonexistent")
    found = newest_loadable(folder / name for name in RESUME_FILES)
    if found is None:
        log.warning("run %s left no checkpoint that loads in %s: this replicate starts over",
                    run.info.run_id, folder)
    return None if found is None else str(found)


def supersede(client: MlflowClient, old: Run, new_run_id: str) -> None:
    """Mark an earlier attempt that is run again from scratch: closed KILLED if a SIGKILL
    left it RUNNING, and left out of the sweep's summary."""
    client.set_tag(old.info.run_id, "superseded_by", new_run_id)
    if old.info.status == "RUNNING":
        client.set_terminated(old.info.run_id, "KILLED")

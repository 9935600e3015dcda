"""One training's MLflow run, from its creation to its final status.

:func:`tracked_run` opens the store (under its lock), creates the run (or reopens an
interrupted one), logs what a new run records up front, and starts the system metrics.
The run is FINISHED only when the block ends without an error, after the test, the model
and the report; any error ends it FAILED (KILLED on Ctrl-C or SIGTERM) with the error as a
tag and the traceback as an artifact, except a tracking server that went away, which
leaves it RUNNING and stops in one line. A full disk ends it FAILED, tagged
``error.disk_full`` (RUNNING where the store's own disk is full), and a resumed sweep
continues it from its newest checkpoint that loads. A search trial its pruner stopped
ends KILLED, tagged ``pruned`` with the epoch.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only
from mlflow import MlflowClient
from mlflow.entities import Run
from omegaconf import DictConfig

from pipeline.files import DiskFull, as_disk_full, disk_full
from pipeline.search import Pruned
from pipeline.tracking import artifacts, resume
from pipeline.tracking.logger import checkpoint_dir, make_logger
from pipeline.tracking.store import (
    TrackingServerGone,
    ensure_experiment,
    open_store,
    server_gone,
)

log = logging.getLogger(__name__)


@dataclass
class TrackedRun:
    client: MlflowClient
    run_id: str

    def metrics(self) -> dict[str, float]:
        """What the run holds now: every metric's last value."""
        return dict(self.client.get_run(self.run_id).data.metrics)


@contextmanager
def tracked_run(cfg: DictConfig, trainer, datamodule, previous: Run | None,
                resume_from: str | None) -> Iterator[TrackedRun]:
    """This job's run, new or (``resume_from``) the earlier attempt ``previous`` continued,
    given to ``trainer`` as its logger; a new run logs the data module's splits as its
    dataset inputs."""
    uri = cfg.logger.tracking_uri
    open_store(uri)
    ensure_experiment(uri, cfg.logger.experiment_name, cfg.logger.artifact_location)
    trainer.logger = logger = make_logger(cfg, previous.info.run_id if resume_from else None)
    client, run_id = logger.experiment, logger.run_id
    if resume_from:
        log.info("continuing run %s from %s", run_id, resume_from)
        client.update_run(run_id, status="RUNNING")
        for key in ("checkpoint_dir", "job_dir", "overrides", "host", "git.dirty"):
            client.set_tag(run_id, key, logger.tags[key])
        client.set_tag(run_id, "resumed_from", resume_from)
        stale = ("error", "error.step", "error.disk_full", "error.traceback")
        for key in set(stale) & set(previous.data.tags):  # what stopped the earlier attempt
            client.delete_tag(run_id, key)
    else:
        if previous is not None:
            resume.supersede(client, previous, run_id)
        artifacts.log_config(client, run_id, cfg)
        splits = datamodule.task.sources() or {  # the user's files: no arrays
            split: datamodule.arrays(split) for split in ("train", "val", "test")}
        artifacts.log_datasets(client, run_id, cfg.data.task, splits)
    # Ranks that SLURM or torchrun started run this too; only rank 0 has a real run.
    monitor = (artifacts.start_system_metrics(run_id, uri) if rank_zero_only.rank == 0
               else None)
    gone = False
    try:
        yield TrackedRun(client, run_id)
    except Pruned as err:  # a search trial stopped by its pruner: its curve stays
        client.set_tag(run_id, "pruned", str(err.epoch))
        client.set_terminated(run_id, "KILLED")
        drop_local_checkpoints(client, run_id, checkpoint_dir(cfg))
        raise
    except BaseException as err:
        gone = server_gone(uri)
        if gone:  # nothing more can be recorded; say so in one line
            raise TrackingServerGone(uri, err, checkpoint_dir(cfg) or cfg.paths.run_dir) from err
        if isinstance(err, Exception) and disk_full(err) and not isinstance(err, DiskFull):
            full = as_disk_full(err, cfg.paths.output_dir, uri)  # says where, in one line
            artifacts.record_failure(client, run_id, full)
            raise full from err
        artifacts.record_failure(client, run_id, err)
        raise
    else:
        client.set_terminated(run_id, "FINISHED")
        drop_local_checkpoints(client, run_id, checkpoint_dir(cfg))
    finally:
        if monitor is not None and not gone:  # after the server went away, its last
            monitor.finish()  # upload would wait out MLflow's retries once more


def drop_local_checkpoints(client: MlflowClient, run_id: str, folder: str | None) -> None:
    """Once a run FINISHED, its best checkpoint lives in its artifacts (the logger uploaded
    it) and the files kept only to resume it (``last.ckpt``, a spent ``interrupted.ckpt``)
    have served: the run folder keeps none of them, so each file is stored once."""
    if folder is None or not Path(folder).is_dir():
        return
    uploaded = {a.path for a in client.list_artifacts(run_id)}
    for ckpt in Path(folder).glob("*.ckpt"):
        if ckpt.stem in uploaded or ckpt.name in resume.RESUME_FILES:
            ckpt.unlink()
    if not any(Path(folder).iterdir()):
        shutil.rmtree(folder)

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

Where several processes train one model (DDP: ``trainer=ddp``, or ``trainer=multinode``
under torchrun, one or more per host), rank 0 owns the run: it alone opens the store,
creates or continues the run and logs to it, with the world size as the tag
``world_size``; every other rank trains and logs nothing. A rank whose peers stop answering
(a process killed, a host lost: the strategy's ``timeout``) ends the run FAILED and stops in
one line (:class:`RankLost`). A job started again in the same run folder (``hydra.run.dir``)
continues the unfinished run whose checkpoints are there, as Lightning continues training
from the folder's newest checkpoint (``interrupted.ckpt`` or ``last.ckpt``).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.pytorch.loggers.logger import DummyLogger
from mlflow import MlflowClient
from mlflow.entities import Run
from omegaconf import DictConfig

from pipeline.checkpoints import newest_loadable
from pipeline.errors import DiskFull, Pruned, RankLost, TrackingServerGone
from pipeline.tracking import artifacts, resume
from pipeline.tracking.logger import checkpoint_dir, make_logger
from pipeline.tracking.store import ensure_experiment, open_store, server_gone

log = logging.getLogger(__name__)


# What the collective communication between ranks says when a peer is gone: gloo's closed
# connections and timeouts (with or without its source path), NCCL's errors, the c10d
# store's.
LOST_RANK_WORDS = ("gloo/transport", "Connection closed by peer", "Connection reset by peer",
                   "Broken pipe", "Timed out waiting", "Operation timed out",
                   "timeout caused pair closure", "NCCL error", "ProcessGroupNCCL",
                   "DistNetworkError", "Socket Timeout")


def rank_lost(err: BaseException | None, world_size: int) -> bool:
    """``err`` is a failure of the communication between the ranks of a multi-process
    training (a peer that died or stopped answering), rather than of this rank's own work."""
    seen = set()
    while err is not None and id(err) not in seen and world_size > 1:
        seen.add(id(err))
        if isinstance(err, torch.distributed.DistError) or (
                isinstance(err, RuntimeError) and any(w in str(err) for w in LOST_RANK_WORDS)):
            return True
        err = err.__cause__ or err.__context__
    return False


@dataclass
class TrackedRun:
    """The job's run; on a rank other than 0 there is none (``client`` and ``run_id`` None):
    rank 0 owns the run and reports it."""

    client: MlflowClient | None
    run_id: str | None

    def metrics(self) -> dict[str, float]:
        """What the run holds now: every metric's last value (none on a rank other than 0)."""
        if self.run_id is None:
            return {}
        return dict(self.client.get_run(self.run_id).data.metrics)


@contextmanager
def tracked_run(cfg: DictConfig, trainer, datamodule, previous: Run | None,
                resume_from: str | None) -> Iterator[TrackedRun]:
    """This job's run, new or (``resume_from``) the earlier attempt ``previous`` continued,
    given to ``trainer`` as its logger; a new run logs the data module's splits as its
    dataset inputs. Outside a sweep (no ``previous``), an unfinished run whose checkpoint
    folder this job reuses is the earlier attempt. On a rank other than 0, no run
    (:func:`follower_run`)."""
    if not trainer.is_global_zero:
        with follower_run(cfg, trainer) as run:
            yield run
        return
    uri = cfg.logger.tracking_uri
    open_store(uri)
    experiment_id = ensure_experiment(uri, cfg.logger.experiment_name,
                                      cfg.logger.artifact_location)
    if previous is None and resume_from is None:
        previous, resume_from = run_in_this_folder(MlflowClient(uri), experiment_id, cfg)
    trainer.logger = logger = make_logger(cfg, previous.info.run_id if previous and resume_from
                                          else None)
    client, run_id = logger.experiment, logger.run_id
    if previous is not None and resume_from:
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
        if resume_from:  # the folder's checkpoint without a run to continue: Lightning
            client.set_tag(run_id, "resumed_from", resume_from)  # still starts from it
        artifacts.log_config(client, run_id, cfg)
        splits = datamodule.task.sources() or {  # the user's files: no arrays
            split: datamodule.arrays(split) for split in ("train", "val", "test")}
        artifacts.log_datasets(client, run_id, cfg.data.task, splits)
    client.set_tag(run_id, "world_size", str(trainer.world_size))
    monitor = artifacts.start_system_metrics(run_id, uri)
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
        full = DiskFull.of(err, cfg.paths.output_dir, uri)  # says where, in one line
        if isinstance(err, Exception) and full is not None and full is not err:
            artifacts.record_failure(client, run_id, full)
            raise full from err
        if rank_lost(err, trainer.world_size):
            lost = RankLost(err, trainer.world_size, cfg.paths.run_dir,
                            checkpoint_dir(cfg) or cfg.paths.run_dir)
            artifacts.record_failure(client, run_id, lost)
            raise lost from err
        artifacts.record_failure(client, run_id, err)
        raise
    else:
        client.set_terminated(run_id, "FINISHED")
        drop_local_checkpoints(client, run_id, checkpoint_dir(cfg))
    finally:
        if not gone:  # after the server went away, its last upload would wait out
            monitor.finish()  # MLflow's retries once more


@contextmanager
def follower_run(cfg: DictConfig, trainer) -> Iterator[TrackedRun]:
    """A rank other than 0 (SLURM's or torchrun's ranks, one per device): it trains its
    share of every batch but opens no store (on another host it may not reach rank 0's, and
    two processes creating one SQLite store collide), creates no run and logs nothing: its
    Trainer's logger is Lightning's ``DummyLogger``. Where its peers stop answering it stops
    in one line (:class:`RankLost`)."""
    trainer.logger = DummyLogger()
    try:
        yield TrackedRun(None, None)
    except BaseException as err:
        if rank_lost(err, trainer.world_size):
            raise RankLost(err, trainer.world_size, cfg.paths.run_dir,
                           checkpoint_dir(cfg) or cfg.paths.run_dir) from err
        raise


def run_in_this_folder(client: MlflowClient, experiment_id: str,
                       cfg: DictConfig) -> tuple[Run | None, str | None]:
    """Where this job's checkpoint folder already holds a checkpoint to resume from (a job
    started again with the same ``hydra.run.dir``): the checkpoint Lightning continues
    from (the newest that loads; a damaged one is set aside) and the unfinished run that
    wrote it, if the store has it; else (None, None)."""
    folder = checkpoint_dir(cfg)
    if folder is None or not Path(folder).is_dir():
        return None, None
    found = newest_loadable(Path(folder) / name for name in resume.RESUME_FILES)
    if found is None:
        return None, None
    quote = "'" if "'" not in folder else '"'
    runs = client.search_runs([experiment_id],
                              filter_string=f"tags.checkpoint_dir = {quote}{folder}{quote}",
                              order_by=["attributes.start_time DESC"], max_results=1)
    unfinished = runs[0] if runs and runs[0].info.status != "FINISHED" else None
    return unfinished, str(found)


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

"""Lightning's MLflow logger for one training, and how a job makes it.

Lightning's ``MLFlowLogger.finalize`` closes the MLflow run when ``fit`` ends, before the
test, the model upload and the report; a run killed then looked FINISHED. :class:`RunLogger`
uploads the checkpoints as its parent does but leaves the run's status to its owner
(``pipeline.tracking.run.tracked_run``), which closes it once everything is logged.
"""

from __future__ import annotations

import logging
import socket
import subprocess
from pathlib import Path

from hydra.utils import instantiate
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from pipeline.tracking.handoff import sweep_info
from pipeline.tracking.naming import (
    candidate_hash,
    candidate_name,
    config_hash,
    run_name,
    task_overrides,
    variant_name,
)
from pipeline.tracking.store import server_gone

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class RunLogger(MLFlowLogger):
    """``MLFlowLogger`` that never ends the run itself, uploads the best checkpoint (that of
    each ``ModelCheckpoint`` with a monitor; every one where none has), and skips the
    uploads when the tracking server went away (each would wait out MLflow's retries).

    ``last.ckpt`` is not uploaded: it serves only to resume the run from its folder, and
    once the run is FINISHED it is deleted there (``pipeline.tracking.run``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._checkpoint_callbacks: dict[tuple, object] = {}

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        super().after_save_checkpoint(checkpoint_callback)
        key = (checkpoint_callback.dirpath, checkpoint_callback.filename,
               checkpoint_callback.monitor)  # Lightning hands a fresh weak proxy each time
        self._checkpoint_callbacks[key] = checkpoint_callback

    @rank_zero_only  # as its parent's: the other ranks have no run
    def finalize(self, status: str = "success") -> None:
        if not self._initialized or (status == "failed" and server_gone(self._tracking_uri)):
            return
        callbacks = list(self._checkpoint_callbacks.values())
        for callback in [c for c in callbacks if c.monitor] or callbacks:
            try:
                self._scan_and_log_checkpoints(callback)
            except Exception as err:
                if status != "failed":
                    raise
                # The error that stopped training is the one reported; the checkpoints stay
                # in the run folder.
                log.warning("checkpoints not logged after the failure (%s: %s)",
                            type(err).__name__, err, extra={"console": False})
                return

    @property
    def tracking_uri(self) -> str:
        return self._tracking_uri


def checkpoint_dir(cfg: DictConfig) -> str | None:
    """Where this run's ModelCheckpoint writes, or None without one."""
    return OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath")


def git_dirty() -> str:
    """"true"/"false": uncommitted changes in the project's checkout ("unknown" outside git)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                             cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return "unknown" if out.returncode else str(bool(out.stdout.strip())).lower()


def make_logger(cfg: DictConfig, run_id: str | None = None) -> RunLogger:
    """The logger for this job: readable name, tags, child of the sweep's run; with
    ``run_id``, it continues that run (a resumed job). Nothing touches the store until the
    run is first used (``logger.experiment``)."""
    tags = {
        "variant": variant_name(cfg.model),
        "task": cfg.data.task,
        "overrides": " ".join(task_overrides())[:5000],
        "monitor": cfg.monitor,
        "monitor_mode": cfg.monitor_mode,
        "config_hash": config_hash(cfg),
        # Replicates of one configuration (seeds) share their candidate: group runs by it.
        "candidate": candidate_hash(cfg),
        "candidate_name": candidate_name(cfg),
        "host": socket.gethostname(),
        "git.dirty": git_dirty(),
        "checkpoint_dir": checkpoint_dir(cfg) or "",
        "job_dir": str(cfg.paths.run_dir),
    }
    tags.update({f"tag.{t}": "true" for t in cfg.get("tags") or []})
    info = sweep_info()
    if info is not None:
        tags["mlflow.parentRunId"] = info.run_id
    return instantiate(cfg.logger, run_name=run_name(cfg), tags=tags, run_id=run_id)

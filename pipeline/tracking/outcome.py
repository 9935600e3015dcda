"""How a job ends, the one record of it a sweep counts, and the line that says so.

:class:`JobOutcome` wraps a job of ``python -m pipeline.train``. In a single run a bad
setting (``ConfigError``, ``StoreError``: exit status 2) or a tracking server that went away
(exit status 3) or a full disk (exit status 4) ends it with one line, any other error with
its traceback (``HYDRA_FULL_ERROR=1`` always shows it); a configuration refused before any
run leaves no run folder behind. In a sweep every job leaves ``job.json`` in its folder
(status, headline metric, seconds, the error if it failed), and its error line goes to its
log file: the sweep's display reports it from the replicate's record. A failed job returns
NaN so the sweep goes on; the sweep callback counts the failed records, with its children
that did not finish, and the sweep exits 1 if any job failed. A search trial that its
pruner stopped records PRUNED, which is no failure.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pipeline.errors import ONE_LINE, ConfigError, DiskFull, Pruned
from pipeline.files import read_json, write_json
from pipeline.tracking.handoff import in_sweep
from pipeline.tracking.naming import candidate_name

log = logging.getLogger(__name__)
JOB_FILE = "job.json"


class JobOutcome(AbstractContextManager):
    """``with JobOutcome(cfg) as job: job.metrics = train(cfg)``, then ``job.value``: the
    job's ``best/<monitor>``, NaN if it failed in a sweep."""

    def __init__(self, cfg: DictConfig):
        self.cfg, self.metrics, self.started = cfg, None, time.time()
        self.in_sweep = in_sweep()

    @property
    def value(self) -> float:
        return (self.metrics or {}).get(f"best/{self.cfg.get('monitor')}", float("nan"))

    def __exit__(self, kind, err, tb) -> bool:
        sweep = self.in_sweep
        if err is not None and not isinstance(err, Exception):
            return False  # Ctrl-C, SystemExit: not the job's to swallow
        if err is None:
            if sweep:
                self._record("FINISHED")
            return False
        if isinstance(err, Pruned) and sweep:
            self._record("PRUNED", str(err))
            return True
        err = DiskFull.of(err, self.cfg.paths.output_dir, self.cfg.logger.tracking_uri) or err
        status = next((s for k, s in ONE_LINE.items() if isinstance(err, k)), None)
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or not (sweep or status):
            return False
        if not sweep:
            log.error("%s", err)
            if isinstance(err, ConfigError):
                drop_run_folder()
            sys.exit(status)
        recorded = self._record("FAILED", f"{type(err).__name__}: {err}")
        # The sweep's display reports a recorded failure; one without a record, here.
        log.error("job failed, the sweep goes on: %s: %s", type(err).__name__, err,
                  extra={"console": False} if recorded else {})
        return True

    def _record(self, status: str, error: str | None = None) -> bool:
        """Write the job's record; False where the disk is full (one line says so)."""
        job_dir = Path(HydraConfig.get().runtime.output_dir)
        seconds = time.time() - self.started
        metric = self.cfg.get("monitor") or "metric"
        try:
            write_json(job_dir / JOB_FILE, {
                "job": HydraConfig.get().job.num, "status": status, "metric": metric,
                "value": None if math.isnan(self.value) else self.value, "seconds": seconds,
                "error": error, "candidate": candidate_name(self.cfg),
                "replicates": self.cfg.seeds if isinstance(self.cfg.get("seeds"), int) else 1})
        except DiskFull as full:
            log.error("%s (the job's record; the sweep counts its run instead)", full)
            return False
        log.info("job %s: %s in %.0f s", HydraConfig.get().job.num, status, seconds)
        return True


def drop_run_folder() -> None:
    """Remove this run's Hydra folder where it holds nothing but what Hydra itself wrote
    (the job's log file, ``.hydra/``): a refused configuration leaves nothing behind."""
    if not HydraConfig.initialized():
        return
    folder = Path(HydraConfig.get().runtime.output_dir)
    hydra_own = {f"{HydraConfig.get().job.name}.log", ".hydra"}
    if folder.is_dir() and {p.name for p in folder.iterdir()} <= hydra_own:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # runs/, where it held only this one


def records(sweep_dir: Path) -> list[dict]:
    """Every finished job's record in this sweep folder; a damaged one is set aside with one
    line and ignored (the sweep still counts its run)."""
    found = ((p, read_json(p, "the job record")) for p in Path(sweep_dir).glob(f"*/{JOB_FILE}"))
    return [r | {"dir": str(p.parent)} for p, r in found
            if isinstance(r, dict) and {"status", "seconds"} <= set(r)]


def failed_job_dirs(sweep_dir: Path) -> set[str]:
    """The folders of this sweep's jobs that recorded a failure (a pruned trial did not
    fail)."""
    return {r["dir"] for r in records(sweep_dir) if r["status"] not in ("FINISHED", "PRUNED")}

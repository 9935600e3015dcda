"""How a job ends, the one record of it a sweep counts, and the line that says so.

:class:`JobOutcome` wraps a job of ``python -m pipeline.train``. In a single run a bad
setting (``ConfigError``, ``StoreError``: exit status 2) or a tracking server that went away
(exit status 3) or a full disk (exit status 4) ends it with one line, any other error with
its traceback (``HYDRA_FULL_ERROR=1`` always shows it). In a sweep every job leaves
``job.json`` in its folder (status, headline metric, seconds, the error if it failed) and
logs one line: "job 4/10 model=cho model.depth=2: val/seq_acc 0.938 in 43 s; about 5 min
left". A failed job returns NaN so the sweep goes on; the sweep callback counts the failed
records, with its children that did not finish, and the sweep exits 1 if any job failed.
A search trial that its pruner stopped records PRUNED, which is no failure.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from pipeline.config import ConfigError
from pipeline.files import DiskFull, as_disk_full, disk_full, read_json, write_json
from pipeline.search import Pruned
from pipeline.tracking.handoff import sweep_info
from pipeline.tracking.naming import override_key, task_overrides
from pipeline.tracking.store import StoreError, TrackingServerGone

log = logging.getLogger(__name__)
JOB_FILE = "job.json"
ONE_LINE = {ConfigError: 2, StoreError: 2, TrackingServerGone: 3, DiskFull: 4}


class JobOutcome(AbstractContextManager):
    """``with JobOutcome(cfg) as job: job.metrics = train(cfg)``, then ``job.value``: the
    job's ``best/<monitor>``, NaN if it failed in a sweep."""

    def __init__(self, cfg: DictConfig):
        self.cfg, self.metrics, self.started = cfg, None, time.time()

    @property
    def value(self) -> float:
        return (self.metrics or {}).get(f"best/{self.cfg.get('monitor')}", float("nan"))

    def __exit__(self, kind, err, tb) -> bool:
        sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        if err is not None and not isinstance(err, Exception):
            return False  # Ctrl-C, SystemExit: not the job's to swallow
        if err is None:
            if sweep:
                self._record("FINISHED")
            return False
        if isinstance(err, Pruned) and sweep:
            self._record("PRUNED", str(err))
            return True
        if disk_full(err) and not isinstance(err, DiskFull):
            err = as_disk_full(err, self.cfg.paths.output_dir,
                               self.cfg.logger.tracking_uri)
        status = next((s for k, s in ONE_LINE.items() if isinstance(err, k)), None)
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or not (sweep or status):
            return False
        if not sweep:
            log.error("%s", err)
            sys.exit(status)
        log.error("job failed, the sweep goes on: %s: %s", type(err).__name__, err)
        self._record("FAILED", f"{type(err).__name__}: {err}")
        return True

    def _record(self, status: str, error: str | None = None) -> None:
        job_dir = Path(HydraConfig.get().runtime.output_dir)
        seconds = time.time() - self.started
        metric = self.cfg.get("monitor") or "metric"
        try:
            write_json(job_dir / JOB_FILE, {
                "job": HydraConfig.get().job.num, "status": status, "metric": metric,
                "value": None if math.isnan(self.value) else self.value, "seconds": seconds,
                "error": error})
        except DiskFull as full:
            log.error("%s (the job's record; the sweep counts its run instead)", full)
            return
        log.info("%s", progress_line(job_dir.parent, status, metric, self.value, seconds))


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


def progress_line(sweep_dir: Path, status: str, metric: str, value: float,
                  seconds: float) -> str:
    """``job 4/10 model=cho: val/seq_acc 0.938 in 43 s; about 5 min left``."""
    done = records(sweep_dir)
    info = sweep_info()
    total = info.total if info else None
    swept = info.swept if info else []
    label = " ".join(o for o in task_overrides() if override_key(o) in swept)
    result = (f"{metric} {value:.3f}" if status == "FINISHED" and not math.isnan(value)
              else status.lower())
    line = f"job {len(done)}/{total or '?'} {label}: {result} in {seconds:.0f} s".replace(
        "  ", " ")
    if total and len(done) < total:
        mean = sum(r["seconds"] for r in done) / len(done)
        left = mean * (total - len(done)) / max(1, info.parallel)
        line += f"; about {left / 60:.0f} min left" if left >= 90 else f"; about {left:.0f} s left"
    return line

"""How a job ends when it fails, and the one record of it that a sweep counts.

:class:`JobOutcome` wraps a job of ``python -m pipeline.train``. In a single run a bad
setting (``ConfigError``, exit status 2) or a tracking server that went away (exit status 3)
ends it with one line, any other error with its traceback (``HYDRA_FULL_ERROR=1`` always
shows it). In a sweep every failure is one line in the log and a ``failure.json`` in the
job's folder, and the job returns NaN so the sweep goes on; the sweep callback counts these
records, with its children that did not finish, and the sweep exits 1 if any job failed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from contextlib import AbstractContextManager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from pipeline.config import ConfigError
from pipeline.tracking.store import StoreError, TrackingServerGone

log = logging.getLogger(__name__)
FAILURE_FILE = "failure.json"
ONE_LINE = {ConfigError: 2, StoreError: 2, TrackingServerGone: 3}


class JobOutcome(AbstractContextManager):
    """``with JobOutcome(): return train(cfg)``; after the block, the job failed."""

    def __exit__(self, kind, err, tb) -> bool:
        if err is None or not isinstance(err, Exception):
            return False
        sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        status = next((s for k, s in ONE_LINE.items() if isinstance(err, k)), None)
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or not (sweep or status):
            return False
        if not sweep:
            log.error("%s", err)
            sys.exit(status)
        log.error("job failed, the sweep goes on: %s: %s", type(err).__name__, err)
        job_dir = Path(HydraConfig.get().runtime.output_dir)
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / FAILURE_FILE).write_text(json.dumps(
            {"job": HydraConfig.get().job.num, "error": f"{type(err).__name__}: {err}"}))
        return True


def failed_job_dirs(sweep_dir: Path) -> set[str]:
    """The folders of this sweep's jobs that recorded a failure."""
    return {str(p.parent) for p in Path(sweep_dir).glob(f"*/{FAILURE_FILE}")}

"""The sweep's progress records: one ``replicate.json`` per replicate, in its own folder.

A sweep's job writes its replicate's record when the replicate starts (RUNNING) and again
when it ends (FINISHED, FAILED, PRUNED, or SKIPPED where a resumed sweep found it complete),
with its candidate, seed, monitored and test scores, seconds and error. The sweep's display
(:mod:`pipeline.console`, which the config gives the sweep callback), in the process that
launched the jobs, reads them from the sweep folder: any launcher, any process, the same
files.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import DictConfig

from pipeline.errors import DiskFull
from pipeline.files import read_json, write_json
from pipeline.tracking import outcome
from pipeline.tracking.handoff import sweep_info
from pipeline.tracking.naming import candidate_name

RECORD = "replicate.json"
DONE = ("FINISHED", "FAILED", "PRUNED", "SKIPPED")


@dataclass
class Replicate:
    """One replicate of a sweep's candidate, as its job last recorded it."""

    candidate: str
    seed: int
    status: str
    monitor: str
    mode: str
    started: float
    seconds: float | None = None
    value: float | None = None  # the monitored metric at the best checkpoint
    test: float | None = None  # its test counterpart
    error: str | None = None
    run_id: str | None = None
    runs: int = 1  # the sweep's runs it stands for: a pruned trial's unstarted seeds too

    @property
    def done(self) -> bool:
        return self.status in DONE

    @property
    def test_metric(self) -> str:
        return self.monitor.replace("val/", "test/", 1)


def _number(value) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


class Recorder:
    """Writes one replicate's record; inert outside a sweep. A full disk costs the record
    (the sweep still counts the run), never the replicate."""

    def __init__(self, cfg: DictConfig):
        self.path = Path(cfg.paths.run_dir) / RECORD if sweep_info() else None
        self.entry = Replicate(candidate_name(cfg), int(cfg.seed), "RUNNING", cfg.monitor,
                               cfg.monitor_mode, time.time())

    def start(self) -> None:
        self._write()

    def end(self, status: str, metrics: dict[str, float] | None = None,
            error: BaseException | None = None, run_id: str | None = None,
            runs: int = 1) -> None:
        metrics = metrics or {}
        entry = self.entry
        entry.status, entry.seconds = status, time.time() - entry.started
        entry.runs = runs
        entry.value = _number(metrics.get(f"best/{entry.monitor}", metrics.get(entry.monitor)))
        entry.test = _number(metrics.get(entry.test_metric))
        entry.error = f"{type(error).__name__}: {error}" if error is not None else None
        entry.run_id = run_id
        self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        with contextlib.suppress(DiskFull):  # the job's outcome reports it in its one line
            write_json(self.path, asdict(self.entry))


def read(sweep_dir: Path) -> list[Replicate]:
    """Every replicate record in ``sweep_dir`` (a job's folder, or its ``seed<N>`` folders),
    and for a job that failed before any replicate started (its ``job.json``), one FAILED
    entry standing for all its runs; a damaged record is set aside with one line and left
    out."""
    found, jobs_seen = [], set()
    for pattern in (f"*/{RECORD}", f"*/*/{RECORD}"):
        for path in Path(sweep_dir).glob(pattern):
            data = read_json(path, "a replicate record")
            with contextlib.suppress(TypeError):
                found.append(Replicate(**data))
                jobs_seen.add(path.relative_to(sweep_dir).parts[0])
    for job in outcome.records(sweep_dir):
        if job["status"] == "FAILED" and Path(job["dir"]).name not in jobs_seen:
            found.append(Replicate(
                job.get("candidate", f"job {job.get('job')}"), -1, "FAILED", job["metric"], "max",
                Path(job["dir"], outcome.JOB_FILE).stat().st_mtime - job["seconds"],
                job["seconds"], error=job.get("error"), runs=int(job.get("replicates", 1))))
    return sorted(found, key=lambda r: r.started)

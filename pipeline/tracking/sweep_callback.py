"""The Hydra callback that gives every multirun one MLflow parent run, from start to end.

``on_multirun_start`` opens the store and creates the experiment and the parent run once,
before any job starts, and hands their ids to the jobs (``handoff.py``). With
``sweep_id=<parent run id>`` it reopens that parent instead: each job then skips a complete
earlier attempt of its config or continues an unfinished one (``resume.py``).
``on_multirun_end`` has the parent's report made (``sweep_report.py``) and closes the
parent, FAILED if any job failed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pipeline.errors import DiskFull
from pipeline.tracking.handoff import SweepInfo, sweep_info_in, write_sweep_info
from pipeline.tracking.naming import override_key, override_values
from pipeline.tracking.outcome import failed_job_dirs
from pipeline.tracking.store import ensure_experiment, open_store, run_where

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

log = logging.getLogger(__name__)
# Below this much free space a sweep does not start: Hydra writes its multirun.yaml next,
# with a plain open() that a full disk turns into a traceback.
MIN_FREE_BYTES = 2**20


def child_runs(client: MlflowClient, experiment_id: str, parent_id: str) -> list[Run]:
    """Every training run whose ``mlflow.parentRunId`` is ``parent_id``, but attempts that a
    resumed sweep ran again (tagged ``superseded_by``) and the sweep's ensembles."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
        max_results=10000,
    )
    return [r for r in runs if "superseded_by" not in r.data.tags
            and r.data.tags.get("role") != "ensemble"]


def resumable_parent(client: MlflowClient, run_id: str, experiment_id: str) -> Run:
    """The sweep parent run ``sweep_id`` names, or exit with one line saying what is wrong
    (Hydra turns a callback's exception into a warning and would sweep on regardless)."""
    # MLflow, imported only once used: Hydra makes this callback for every run.
    from mlflow.exceptions import MlflowException  # noqa: PLC0415

    try:
        run = client.get_run(run_id)
    except MlflowException:
        run = None
    if run is None or run.data.tags.get("role") != "sweep" \
            or run.info.experiment_id != experiment_id:
        log.error("sweep_id=%r is invalid: the run id of a sweep's parent run in this "
                  "experiment (the `sweep ...` runs in the MLflow UI)", run_id)
        raise SystemExit(2)
    return run


def count_jobs(config: DictConfig, swept: dict[str, str]) -> int | None:
    """How many jobs the sweep runs: Optuna's trials, or the product of the number of values
    of each swept key (parsed as Hydra's basic sweeper parses them); None if unknown."""
    trials = config.hydra.sweeper.get("n_trials")
    if trials:
        return int(trials)
    try:
        parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in swept.items()])
        return math.prod(len(list(o.sweep_string_iterator())) for o in parsed
                         if o.is_sweep_override())
    except Exception:  # a sweep syntax of another sweeper: no count, no estimate
        return None


# What hydra/sweeper=replicates (pipeline/search/replicates.py) is configured with.
REPLICATES_KEYS = {"_target_", "start", "max_seeds", "params"}


def check_auto_seeds(config: DictConfig) -> None:
    """``seeds=auto`` only in a grid sweep of the replicates sweeper: else one line and exit
    status 2, before anything is created (an Optuna search's settings merged into that
    sweeper would fail it once the parent run exists; another sweeper's jobs would each
    refuse the value)."""
    if str(config.get("seeds")) != "auto":
        return
    sweeper = config.hydra.sweeper
    if not str(sweeper.get("_target_", "")).endswith("ReplicatesSweeper") \
            or set(sweeper) - REPLICATES_KEYS:
        log.error("seeds='auto' is invalid with this sweeper: auto plans the seeds of a "
                  "grid sweep with hydra/sweeper=replicates (make sweep SEEDS=auto); an "
                  "Optuna search takes seeds=N")
        raise SystemExit(2)


class MLflowSweepCallback(Callback):
    """See the module docstring. Hydra makes it for every run, sweep or not: MLflow is only
    imported once a multirun starts."""

    def __init__(self, tracking_uri: str, experiment_name: str, artifact_location: str | None,
                 display: Callable[..., Any] | None = None, ensemble: Any = False):
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.artifact_location = artifact_location
        # What the sweep shows while it runs and at its end (pipeline.console.SweepDisplay,
        # a partial in the config): made with the sweep folder, the number of runs and how
        # many run at once.
        self.make_display = display
        self.display = None
        # The ensemble champion (``ensemble`` in conf/train.yaml: pipeline.ensemble), or
        # false; built at the sweep's end.
        self.ensemble = ensemble
        self.parent_id: str | None = None
        self.experiment_id: str | None = None
        self.swept: list[str] = []
        self.total: int | None = None
        self.parallel = 1
        self.seeds = 1

    def __getstate__(self) -> dict:
        """What a launcher sends to its workers (joblib pickles the callbacks): the display
        stays in this process."""
        return {**self.__dict__, "display": None}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_auto_seeds(config)
        from mlflow import MlflowClient  # noqa: PLC0415 - MLflow: only once a multirun starts

        open_store(self.tracking_uri)
        self.experiment_id = ensure_experiment(
            self.tracking_uri, self.experiment_name, self.artifact_location)
        client = MlflowClient(self.tracking_uri)
        sweep_dir = Path(config.hydra.sweep.dir)
        params = config.hydra.sweeper.get("params")
        grid = OmegaConf.to_container(params, resolve=True) if params else {}
        overrides = [o for o in OmegaConf.to_container(config.hydra.overrides.task)
                     if override_key(o) != "sweep_id"]
        swept = {key: str(values) for key, values in grid.items()}
        swept.update(override_values(overrides))  # the command line wins over the grid
        swept = {key: values for key, values in swept.items()
                 if key in grid or "," in values or "(" in values}
        resume = config.get("sweep_id")
        if resume:
            self.parent_id = resumable_parent(client, resume, self.experiment_id).info.run_id
            client.update_run(self.parent_id, status="RUNNING")
            client.set_tag(self.parent_id, "resumed_in", str(sweep_dir))
        else:
            self.parent_id = client.create_run(
                self.experiment_id, run_name=f"sweep {sweep_dir.name}",
                tags={"sweep_dir": str(sweep_dir), "overrides": " ".join(overrides)[:5000],
                      "role": "sweep"},
            ).info.run_id
            for key, values in swept.items():
                client.log_param(self.parent_id, key, values)
        self.swept = list(swept)
        # seeds=auto (hydra/sweeper=replicates): how many runs is known only after the pilot.
        auto = str(config.get("seeds")) == "auto"
        self.total = None if auto else count_jobs(config, swept)
        # Jobs at once: joblib's n_jobs, submitit's array_parallelism, else one at a time.
        launcher = config.hydra.launcher
        at_once = launcher.get("n_jobs") or launcher.get("array_parallelism") or 1
        self.parallel = max(1, min(at_once, self.total or at_once))
        self.seeds = int(config.hydra.sweeper.get("start", 1)) if auto \
            else int(config.get("seeds") or 1)
        try:
            write_sweep_info(sweep_dir, SweepInfo(
                self.parent_id, self.experiment_id, self.swept, bool(resume), total=self.total,
                parallel=self.parallel))
            room = shutil.disk_usage(sweep_dir).free
            if room < MIN_FREE_BYTES:  # Hydra's own multirun.yaml comes next
                raise DiskFull(f"{sweep_dir} ({room // 1024} KiB free; a sweep starts with "
                               f"at least {MIN_FREE_BYTES // 2**20} MiB)")
        except DiskFull as err:
            self._stop(client, err)
        runs = f"{self.total * self.seeds} runs" if self.total else "its runs"
        log.info("sweep%s: %s, %d at a time; parent run %s in %s; job logs in %s",
                 " (resumed)" if resume else "", runs, self.parallel, self.parent_id,
                 self.tracking_uri, sweep_dir)
        if self.make_display:
            self.display = instantiate(self.make_display)(
                sweep_dir, self.total and self.total * self.seeds, self.parallel).start()

    def _stop(self, client: MlflowClient, err: DiskFull) -> None:
        """End the sweep before any job, in one line: the disk is full."""
        log.error("%s: no job started; free some space and run the sweep again (resume it "
                  "with sweep_id=%s)", err, self.parent_id)
        with contextlib.suppress(Exception):  # the store may sit on the same full disk
            client.set_tag(self.parent_id, "error", str(err)[:5000])
            client.set_terminated(self.parent_id, "FAILED")
        raise SystemExit(4)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.display is not None:
            self.display.stop()
        if self.parent_id is None:
            return
        from mlflow import MlflowClient  # noqa: PLC0415 - MLflow: only once a multirun starts

        client = MlflowClient(self.tracking_uri)
        sweep_dir = Path(config.hydra.sweep.dir)
        info = sweep_info_in(sweep_dir)
        if info is not None and info.summary_by:
            self._leave_summary(info.summary_by, sweep_dir)
            return
        runs = child_runs(client, self.experiment_id, self.parent_id)
        failed = failed_job_dirs(sweep_dir) | {
            r.data.tags.get("job_dir", r.info.run_id) for r in runs
            if r.info.status != "FINISHED" and "pruned" not in r.data.tags}
        # Jobs that left neither a run nor a record (a full disk before either) count too;
        # a pruned trial's run stands for all its replicates (the others never start).
        finished = sum(r.info.status == "FINISHED" for r in runs) + self.seeds * sum(
            "pruned" in r.data.tags for r in runs)
        missing = (self.total * self.seeds - finished - len(failed)) if self.total else 0
        failed_jobs = len(failed) + max(0, missing)
        try:
            failed_jobs = self._report(client, runs, sweep_dir, failed_jobs,
                                       config.get("min_effect"),
                                       info.auto_seeds if info is not None else None)
        except Exception:
            if not failed_jobs:
                raise  # Hydra turns it into a warning
            log.exception("the sweep's summary failed")
        if failed_jobs:
            # The sweep's exit status: Hydra turns a callback's exception into a warning but
            # lets SystemExit through, and calls on_multirun_end in reverse order, so this
            # callback (listed first in conf/hydra/default.yaml) is the last one called.
            raise SystemExit(1)

    def _leave_summary(self, summary_by: str, sweep_dir: Path) -> None:
        """This process's jobs are done and another process writes the summary: where the
        sweep is; exit 1 if any of this process's jobs failed."""
        failed = failed_job_dirs(sweep_dir)
        where = [("sweep", run_where(self.tracking_uri, self.experiment_id, self.parent_id)),
                 ("summary", f"written by {summary_by}, in the parent run"),
                 ("jobs", f"{len(failed)} failed here; their logs in {sweep_dir}/<job>/")]
        if self.display is not None:
            self.display.finish([], "", where)
        else:
            log.info("sweep %s: %s writes the summary", self.parent_id, summary_by)
        if failed:
            raise SystemExit(1)

    def _report(self, client: MlflowClient, runs: list[Run], sweep_dir: Path,
                failed_jobs: int, min_effect: float | None = None,
                auto_seeds: list[int] | None = None) -> int:
        """The parent's report, then the parent closed (FAILED if any job failed). Returns
        the number of failed jobs; at least 1 where a full disk cut the report short."""
        # pandas and statsmodels, imported only at a sweep's end.
        from pipeline.tracking import sweep_report  # noqa: PLC0415

        try:
            result = sweep_report.report(self.tracking_uri, self.parent_id,
                                         self.experiment_name, runs, sweep_dir, min_effect,
                                         self._ensembler(), auto_seeds)
            client.set_tag(self.parent_id, "failed_jobs", str(failed_jobs))
            client.set_terminated(self.parent_id, "FAILED" if failed_jobs else "FINISHED")
        except Exception as err:
            if not DiskFull.of(err):
                raise
            log.error("%s: the sweep's summary is incomplete and its parent run %s may stay "
                      "RUNNING; free some space and resume it with sweep_id=%s",
                      DiskFull.of(err, sweep_dir, self.tracking_uri), self.parent_id,
                      self.parent_id)
            return max(1, failed_jobs)
        self._say_where(result, runs, sweep_dir, failed_jobs)
        return failed_jobs

    def _ensembler(self) -> Callable[..., Any] | None:
        """The ensemble champion's maker, where ``ensemble`` is not false."""
        return instantiate(self.ensemble) if self.ensemble else None

    def _say_where(self, result, runs: list[Run], sweep_dir: Path, failed_jobs: int) -> None:
        """The candidates' table and where the sweep's results are (through the display),
        else one line naming the summary."""

        summary = sweep_dir / "summary.md"
        if self.display is None:
            log.info("Sweep summary (%d runs, %d failed): %s", len(runs), failed_jobs, summary)
            return
        where = [("sweep", run_where(self.tracking_uri, self.experiment_id, self.parent_id)),
                 ("summary", f"{summary}; in the UI: the parent run's summary.html")]
        if result.ensemble is not None:
            where.append(("ensemble", result.ensemble.summary()))
        if result.champion_uri:
            where.append(("champion", result.champion_uri))
        if failed_jobs:
            planned = self.total * self.seeds if self.total else len(runs)
            where.append(("failed", f"{failed_jobs} of {planned} runs; each one's error is "
                          f"above, its log in {sweep_dir}/<job>/"))
        self.display.finish(result.table, result.metric, where)

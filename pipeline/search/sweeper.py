"""``hydra/sweeper=optuna``: Optuna's ask-and-tell on a study kept in a database.

The study lives in ``storage`` (default: ``outputs/optuna.db``, SQLite beside the MLflow
store; PostgreSQL with ``make server``), named after the sweep's MLflow parent run, so
``sweep_id=<parent run id>`` continues it. The sweeper keeps ``n_jobs`` trials in flight
(the joblib launcher's ``n_jobs``, else 1): it asks the study for a trial as soon as a slot
is free, launches that one job through the configured launcher (joblib, SLURM, or this
process), and tells the study its result (the job's mean ``best/<monitor>`` over its
replicates), its pruning, or its failure. No batch waits for its slowest trial.

While a trial runs, its sweeper beats its heartbeat into the study; a trial whose sweeper
died (SIGKILL, a lost node) is failed after ``grace_period`` seconds by whichever sweeper
looks next, and retried under a new number with the same parameters (Optuna's
``RetryHeartbeatStaleTrialCallback``), which the resumed sweep's job continues from its checkpoint.
Several sweepers, on one machine or many, may share a study: each asks until the study
holds ``n_trials`` trials (finished, pruned, running or waiting; a failed one that is
retried counts once), then waits for the others' running trials. One that joins a study
holding trials reseeds its sampler, so that it does not propose their parameters again.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, Trial, TrialState

from pipeline.search import PRUNED_ATTR, TrialInfo, write_trial_info
from pipeline.tracking.handoff import sweep_info_in, write_sweep_info
from pipeline.tracking.store import sqlite_path

log = logging.getLogger(__name__)

# Each named pruner's defaults (``hydra.sweeper.pruner_args`` adds to them). Steps are
# epochs, counted from 0.
PRUNERS = {
    "median": ("optuna.pruners.MedianPruner", {"n_startup_trials": 4, "n_warmup_steps": 1}),
    "successive_halving": ("optuna.pruners.SuccessiveHalvingPruner", {"min_resource": 1}),
    "hyperband": ("optuna.pruners.HyperbandPruner", {"min_resource": 1}),
    "none": ("optuna.pruners.NopPruner", {}),
}


def open_storage(url: str, heartbeat_interval: int | None = None,
                 grace_period: int | None = None, max_retry: int | None = None) -> RDBStorage:
    """The study's database (any SQLAlchemy URL; an SQLite file's folder is made). With a
    heartbeat, trials whose heartbeat stops are failed and retried ``max_retry`` times."""
    path = sqlite_path(url)
    engine = {}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = {"connect_args": {"timeout": 60}}  # several processes write it
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://"):]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        beat = {}
        if heartbeat_interval:
            beat = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period,
                    "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(
                        max_retry=max_retry, inherit_intermediate_values=True)}
        return RDBStorage(url, engine_kwargs=engine, **beat)


def make_pruner(spec: Any, args: dict | None = None, max_epochs: int | None = None):
    """A pruner by name (``median``, ``successive_halving``, ``hyperband``, ``none``) with
    ``args`` over its defaults, or any pruner as a dict with ``_target_``."""
    if isinstance(spec, dict | DictConfig):
        return instantiate(spec, _convert_="all")
    name = str(spec or "none")
    if name not in PRUNERS:
        raise ValueError(f"hydra.sweeper.pruner={name!r}: one of {', '.join(PRUNERS)}, or a "
                         "dict with the _target_ of an optuna pruner")
    target, defaults = PRUNERS[name]
    kwargs = {**defaults, **(args or {})}
    if name == "hyperband" and max_epochs and "max_resource" not in kwargs:
        kwargs["max_resource"] = max_epochs
    return get_class(target)(**kwargs)


class SearchSpace:
    """The swept keys as Optuna distributions (``params`` of the config, then the command
    line's sweeps, which win), and the fixed overrides every job gets."""

    def __init__(self, params: dict[str, str], arguments: list[str]):
        parser = OverridesParser.create()
        by_key: dict[str, Override] = {}
        for override in parser.parse_overrides([f"{k}={v}" for k, v in params.items()]
                                               + list(arguments)):
            by_key[override.get_key_element()] = override
        self.distributions, self.texts, self.fixed = {}, {}, []
        for key, override in by_key.items():
            if override.is_sweep_override():
                self.distributions[key] = self._distribution(key, override)
            else:
                self.fixed.append(f"{key}={override.get_value_element_as_str()}")

    def _distribution(self, key: str, override: Override):
        value = override.value()
        if isinstance(value, IntervalSweep):
            log_scale = "log" in value.tags
            if all(isinstance(x, int) for x in (value.start, value.end)):
                return IntDistribution(int(value.start), int(value.end), log=log_scale)
            return FloatDistribution(value.start, value.end, log=log_scale)
        values = list(override.sweep_iterator())
        texts = list(override.sweep_string_iterator())
        choices = tuple(v if v is None or isinstance(v, bool | int | float | str) else t
                        for v, t in zip(values, texts, strict=True))
        self.texts[key] = dict(zip(choices, texts, strict=True))
        return CategoricalDistribution(choices)

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """The job's overrides for a trial's ``params``."""
        sampled = [f"{k}={self.texts.get(k, {}).get(params[k], params[k])}"
                   for k in self.distributions]
        return [*self.fixed, *sampled]


class OptunaSweeper(Sweeper):
    """See the module docstring."""

    def __init__(self, sampler: Any, direction: str, study_name: str | None, storage: str,
                 n_trials: int, n_jobs: int | None = None, params: dict | None = None,
                 pruner: Any = "median", pruner_args: dict | None = None,
                 heartbeat_interval: int = 20, grace_period: int | None = None,
                 max_retry: int = 3):
        self.sampler, self.direction, self.study_name = sampler, direction, study_name
        self.storage_url, self.n_trials, self.n_jobs = storage, int(n_trials), n_jobs
        self.params = dict(params or {})
        self.pruner = OmegaConf.to_container(pruner) if isinstance(pruner, DictConfig) \
            else pruner
        self.pruner_args = dict(pruner_args or {})
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.max_retry = max_retry
        # Set by setup():
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None
        # Set by sweep():
        self.space: SearchSpace | None = None
        self.storage: RDBStorage | None = None  # the study's, with its heartbeat
        self.study: optuna.Study | None = None
        self.study_id: int | None = None  # the study's id in `storage`
        self.sweep_dir: Path | None = None
        # The trials this sweeper runs, by number, with their ids in `storage`: _beat
        # records their heartbeats until the study is told their results.
        self._beating: dict[int, int] = {}
        self._told: set[int] = set()  # the trials whose results this sweeper told the study
        self._lock = threading.Lock()
        self._done = threading.Event()

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def slots(self) -> int:
        """Trials in flight: ``n_jobs``, else the joblib launcher's; 1 with Hydra's basic
        launcher, which runs its jobs in this process."""
        # Hydra has no public launcher class to test for (hydra._internal): its choice names it.
        if OmegaConf.select(self.config, "hydra.runtime.choices.hydra/launcher") == "basic":
            return 1
        jobs = self.n_jobs or self.config.hydra.launcher.get("n_jobs") or 1
        return jobs if jobs > 0 else os.cpu_count() or 1

    def max_epochs(self) -> int | None:
        epochs = OmegaConf.select(self.config, "trainer.max_epochs", default=None)
        return epochs if isinstance(epochs, int) and epochs > 0 else None

    def sweep(self, arguments: list[str]) -> None:
        warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeats, stale trials
        optuna.logging.disable_default_handler()  # its lines go where every library's go
        optuna.logging.enable_propagation()  # (pipeline/logs.py): the job log file
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        self.space = SearchSpace(self.params, arguments)
        parent = sweep_info_in(sweep_dir)
        name = self.study_name or (f"{self.config.logger.experiment_name}-{parent.run_id}"
                                   if parent else "seq2seq")
        self.storage = open_storage(self.storage_url, self.heartbeat_interval,
                                    self.grace_period, self.max_retry)
        study = optuna.create_study(
            study_name=name, storage=self.storage,
            sampler=instantiate(self.sampler, _convert_="all"),
            pruner=make_pruner(self.pruner, self.pruner_args, self.max_epochs()),
            direction=self.direction, load_if_exists=True)
        if parent and "mlflow_parent_run_id" not in study.user_attrs:
            study.set_user_attr("mlflow_parent_run_id", parent.run_id)
        if study.get_trials(deepcopy=False):
            # Joining a study that holds trials (another host's, a resumed search's): a
            # sampler seeded as the first one was would propose the same parameters again.
            study.sampler.reseed_rng()
        self.study, self.sweep_dir = study, sweep_dir
        self.study_id = self.storage.get_study_id_from_name(study.study_name)
        slots = self.slots()
        log.info("Optuna study %r in %s: %d trials, %d at a time, pruner %s", name,
                 self.storage_url, self.n_trials, slots, self.pruner)
        self._done.clear()
        beat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        beat.start()
        try:
            self._run(slots)
        finally:
            self._done.set()
            beat.join()
        self._results()
        self._hand_summary_over(sweep_dir)

    # The loop: keep `slots` trials in flight, each asked as soon as a slot frees.
    def _run(self, slots: int) -> None:
        pool = ThreadPoolExecutor(slots, thread_name_prefix="trial") if slots > 1 else None
        running: dict[Future, Trial] = {}
        try:
            while True:
                while len(running) < slots and (trial := self._ask()) is not None:
                    if pool is None:  # in this process, on the main thread
                        self._tell(trial, self._launch_safely(trial))
                    else:
                        running[pool.submit(self._launch_safely, trial)] = trial
                if running:
                    done, _ = wait(running, timeout=self.heartbeat_interval,
                                   return_when=FIRST_COMPLETED)
                    for future in done:
                        self._tell(running.pop(future), future.result())
                elif self._others_running():
                    time.sleep(self.heartbeat_interval)  # their trials may go stale
                else:
                    return
        finally:
            if pool is not None:
                pool.shutdown(wait=True)

    def _trials(self) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False)

    def _trial_id(self, number: int) -> int:
        """The storage's id of the study's trial ``number``."""
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def _ask(self) -> Trial | None:
        """The next trial (a retried one first), or None once the study holds n_trials."""
        fail_stale_trials(self.study)
        trials = self._trials()
        retried = {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}
        held = sum(not (t.state == TrialState.FAIL and t.number in retried) for t in trials)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if not waiting and held >= self.n_trials:
            return None
        with warnings.catch_warnings():
            # The heartbeat is this sweeper's own (_beat), not Study.optimize's.
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = self.study.ask(self.space.distributions)
        trial_id = self._trial_id(trial.number)
        with self._lock:
            self._beating[trial.number] = trial_id
        self.storage.record_heartbeat(trial_id)
        return trial

    def _others_running(self) -> bool:
        with self._lock:
            mine = set(self._beating)
        return any(t.state == TrialState.RUNNING and t.number not in mine
                   for t in self._trials())

    def _launch_safely(self, trial: Trial) -> Any:
        try:
            return self._launch(trial)
        except Exception as err:  # the launcher itself failed (a worker process died)
            return err

    def _launch(self, trial: Trial) -> Any:
        overrides = self.space.overrides(trial.params)
        with self._lock:
            trial_id = self._beating[trial.number]
        write_trial_info(self.sweep_dir, trial.number, TrialInfo(
            self.storage_url, self.study.study_name, trial_id, trial.number, self.pruner,
            self.pruner_args, self.max_epochs()))
        log.info("trial %d: %s", trial.number, " ".join(overrides[len(self.space.fixed):]))
        (result,) = self.launcher.launch([overrides], initial_job_idx=trial.number)
        return result

    def _tell(self, trial: Trial, result: Any) -> None:
        with self._lock:
            trial_id = self._beating.pop(trial.number)
            self._told.add(trial.number)
        try:
            self._record(trial, trial_id, result)
        except UpdateFinishedTrialError:  # another sweeper found it stale and failed it
            self._stale(trial)

    def _stale(self, trial: Trial) -> None:
        log.warning("trial %d was failed as stale meanwhile; its retry runs it again",
                    trial.number)

    def _record(self, trial: Trial, trial_id: int, result: Any) -> None:
        frozen = self.storage.get_trial(trial_id)
        if frozen.state.is_finished():
            self._stale(trial)
            return
        if isinstance(result, BaseException):
            log.error("trial %d: its launch failed (%s: %s); retried", trial.number,
                      type(result).__name__, result)
            self.study.tell(trial, state=TrialState.FAIL)
            retry = self.storage.get_heartbeat_stale_trial_callback()
            if retry is not None:
                retry(self.study, self.storage.get_trial(trial_id))
            return
        if PRUNED_ATTR in frozen.user_attrs:
            self.study.tell(trial, state=TrialState.PRUNED)
            log.info("trial %d: pruned after epoch %s", trial.number,
                     frozen.user_attrs[PRUNED_ATTR])
            return
        try:
            value = result.return_value
        except Exception:
            value = None
        if value is None or not math.isfinite(float(value)):
            self.study.tell(trial, state=TrialState.FAIL)
            log.info("trial %d: failed", trial.number)
        else:
            self.study.tell(trial, float(value))
            log.info("trial %d: %.4f (best so far %.4f)", trial.number, float(value),
                     self.study.best_value)

    def _beat(self) -> None:
        """Record the heartbeat of every trial in flight, every heartbeat_interval / 2,
        until the sweep ends."""
        while not self._done.wait(max(0.5, self.heartbeat_interval / 2)):
            with self._lock:
                beating = dict(self._beating)
            for number, trial_id in beating.items():
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception:  # the database is busy or away: the next beat retries
                    log.debug("heartbeat of trial %d failed", number, exc_info=True)

    def _hand_summary_over(self, sweep_dir: Path) -> None:
        """Where several sweepers share the study, the one that told it its last finished
        trial writes the sweep's summary: the others say so in the sweep's hand-off file,
        which the sweep callback reads. One that told none (it joined a study with nothing
        left to run, or continues a search whose last host died) writes it."""
        finished = [t for t in self._trials() if t.state.is_finished() and t.datetime_complete]
        if not finished or not self._told:
            return
        last = max(finished, key=lambda t: t.datetime_complete)
        info = sweep_info_in(sweep_dir)
        if last.number not in self._told and info is not None:
            write_sweep_info(sweep_dir, replace(
                info, summary_by=f"the sweep that finished trial {last.number}"))

    def _results(self) -> None:
        """``optimization_results.yaml``: the best trial's parameters and value."""
        trials = self._trials()
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        states = {s.name: sum(t.state == s for t in trials) for s in TrialState}
        results: dict[str, Any] = {"name": "optuna", "study": self.study.study_name,
                                   "storage": self.storage_url,
                                   "trials": {k: v for k, v in states.items() if v}}
        if done:
            best = self.study.best_trial
            results.update(best_trial=best.number, best_value=best.value,
                           best_params=dict(best.params))
            log.info("Best trial %d: %.4f %s", best.number, best.value, best.params)
        OmegaConf.save(OmegaConf.create(results), self.sweep_dir / "optimization_results.yaml")

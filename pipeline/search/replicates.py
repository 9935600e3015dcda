"""``hydra/sweeper=replicates`` (``make sweep SEEDS=auto``): a grid whose seeds are planned.

Every candidate of the grid (Hydra's basic sweep syntax: ``key=a,b``) first trains
``start`` seeds, a pilot that measures the spread of its replicates. The best candidate on the
monitored validation metric is then compared with each other one (Welch's test): where that
comparison is undecided (p >= 0.05) and a two-sample t-test would decide it with 80 % power
within ``max_seeds`` seeds per candidate (:func:`pipeline.stats.seeds_needed`, at the observed
difference or ``min_effect``), both candidates get the seeds it needs, in one more round of
jobs (``seed=<next>``, ``seeds=<added>``; the same candidate). The plan is made once, from the
pilot and on validation, so the test split never steers it; the sweep's summary then compares
every candidate on all its replicates, and says how many runs the plan trained against
``max_seeds`` for every candidate.

Without ``seeds=auto`` it runs the grid as Hydra's basic sweeper does, one job per
combination.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

from pipeline import stats
from pipeline.tracking.handoff import sweep_info_in, write_sweep_info

log = logging.getLogger(__name__)
AUTO = "auto"


def grid(arguments: list[str]) -> list[list[str]]:
    """Each job's overrides: the product of every swept key's values (``key=a,b``, Hydra's
    basic sweep syntax), each other override as it is."""
    choices = []
    for override in OverridesParser.create().parse_overrides(arguments):
        key = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise ValueError(f"{key}: the replicates sweeper sweeps lists of values "
                                 "(key=a,b), not ranges or intervals")
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([f"{key}={override.get_value_element_as_str()}"])
    return [list(job) for job in itertools.product(*choices)]


@dataclass
class Plan:
    """How many seeds each candidate (by name) has after the pilot, and will have."""

    have: dict[str, int]
    target: dict[str, int]

    @property
    def added(self) -> dict[str, int]:
        return {c: self.target[c] - self.have[c] for c in self.have
                if self.target[c] > self.have[c]}


def plan_seeds(values: dict[str, list[float]], mode: str, max_seeds: int,
               min_effect: float | None = None, alpha: float = 0.05) -> Plan:
    """The seeds each candidate needs: ``values`` holds each candidate's pilot replicates
    (the monitored validation metric); the best by mean (``mode``: max or min) against each
    other candidate, where undecided and decidable within ``max_seeds``
    (:func:`pipeline.stats.undecided_within`), raises both to :func:`pipeline.stats.
    seeds_needed`."""
    have = {c: len(v) for c, v in values.items()}
    target = dict(have)
    scored = {c: v for c, v in values.items() if v}
    if len(scored) < 2:
        return Plan(have, target)
    sign = 1 if mode == "max" else -1
    best = max(scored, key=lambda c: sign * sum(scored[c]) / len(scored[c]))
    for other, v in scored.items():
        if other == best or not stats.undecided_within(
                scored[best], v, max_seeds, alpha=alpha, min_effect=min_effect):
            continue
        needed = stats.seeds_needed(scored[best], v, alpha=alpha, min_effect=min_effect,
                                    cap=max_seeds)
        target[other] = max(target[other], needed)
        target[best] = max(target[best], needed)
    return Plan(have, target)


class ReplicatesSweeper(Sweeper):
    """See the module docstring."""

    def __init__(self, start: int = 3, max_seeds: int = 10, params: dict | None = None):
        self.start, self.max_seeds = int(start), int(max_seeds)
        self.params = dict(params or {})
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        jobs = grid([f"{k}={v}" for k, v in self.params.items()] + arguments)
        if str(self.config.get("seeds")) != AUTO:
            return [self._launch(jobs, 0)]
        pilot = [[*job, f"seeds={self.start}"] for job in jobs]
        results = [self._launch(pilot, 0)]
        runs = self._pilot_runs(sweep_dir)
        plan = self._plan(runs)
        names = {int(Path(r.data.tags["job_dir"]).relative_to(sweep_dir).parts[0]): name
                 for name, rs in runs.items() for r in rs}
        seed = int(self.config.seed) + self.start  # the pilot's seeds are spent, failed or not
        more = [[*job, f"seed={seed}", f"seeds={plan.added[names[i]]}"]
                for i, job in enumerate(jobs) if names.get(i) in plan.added]
        if more:
            log.info("seeds=auto: %s", ", ".join(f"{c}: {plan.target[c]} seeds"
                                                 for c in plan.added))
            results.append(self._launch(more, len(jobs)))
        info = sweep_info_in(sweep_dir)
        if info is not None:
            write_sweep_info(sweep_dir, replace(info, auto_seeds=[self.start, self.max_seeds]))
        return results

    def _launch(self, jobs: list[list[str]], first: int) -> Any:
        results = self.launcher.launch(jobs, initial_job_idx=first)
        for r in results:
            _ = r.return_value  # a job that raised fails the sweep here, as Hydra's does
        return results

    def _pilot_runs(self, sweep_dir: Path) -> dict[str, list]:
        """The pilot's finished runs by candidate name, from the sweep's parent run."""
        from mlflow import MlflowClient  # noqa: PLC0415 - seconds to import: once used

        from pipeline.tracking.sweep_callback import child_runs  # noqa: PLC0415 - MLflow
        from pipeline.tracking.sweep_report import candidates_of  # noqa: PLC0415 - pandas

        info = sweep_info_in(sweep_dir)
        client = MlflowClient(self.config.logger.tracking_uri)
        runs = child_runs(client, info.experiment_id, info.run_id)
        return {c.name: [r for r in c.finished if Path(r.data.tags.get("job_dir", "/"))
                         .is_relative_to(sweep_dir)] for c in candidates_of(runs)}

    def _plan(self, runs: dict[str, list]) -> Plan:
        """:func:`plan_seeds` on the monitored metric of the pilot's runs."""
        from pipeline.tracking.sweep_report import Candidate  # noqa: PLC0415 - pandas

        first = next((r for rs in runs.values() for r in rs), None)
        tags = first.data.tags if first else {}
        metric, mode = tags.get("monitor", "val/seq_acc"), tags.get("monitor_mode", "max")
        values = {name: Candidate(name, rs).values(metric) for name, rs in runs.items()}
        return plan_seeds(values, mode, self.max_seeds, self.config.get("min_effect"))

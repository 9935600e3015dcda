"""The Optuna sweeper (``pipeline/search``) on Optuna's and Hydra's public interfaces: its
ask-and-tell loop against a real study, in this process, with a launcher that runs no
training; and a source check that it reaches into no private attribute or module."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import OmegaConf

from pipeline.search import PRUNED_ATTR, TrialInfo, trial_file
from pipeline.search.sweeper import OptunaSweeper
from pipeline.search.trial import load_trial
from tests.helpers import ROOT

SEARCH_SOURCES = sorted([*(ROOT / "pipeline" / "search").rglob("*.py"),
                         *(ROOT / "hydra_plugins" / "seq2seq_sweeper").rglob("*.py")])


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _reaches_private(node: ast.AST) -> bool:
    """``x._name`` with ``x`` not ``self``/``cls``, or ``getattr(x, "_name")``."""
    if isinstance(node, ast.Attribute):
        own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
        return _private(node.attr) and not own
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
            and _private(node.args[1].value))


def private_uses(source: str) -> list[str]:
    """``line: what`` for each private name the code reaches: ``x._name`` where ``x`` is not
    ``self`` or ``cls``, ``getattr(x, "_name")``, and imports of private modules or names
    (``hydra._internal``, ``from optuna._x import y``, ``from m import _y``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if _reaches_private(node):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names
                      if any(_private(part) for part in a.name.split("."))]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            module = node.module or ""
            if any(_private(part) for part in module.split(".")):
                found.append(f"{node.lineno}: from {module} import ...")
            found += [f"{node.lineno}: from {module} import {a.name}" for a in node.names
                      if _private(a.name)]
    return found


def test_the_check_finds_private_attributes_and_modules():
    source = """
from hydra._internal.core_plugins.basic_launcher import BasicLauncher
import optuna._experimental
from optuna.storages import _CachedStorage
storage = study._storage
ids = [t._trial_id for t in trials]
getattr(trial, "_trial_id")
self._lock = cls._cache = OptunaSweeper.__doc__
"""
    assert sorted(int(use.split(":")[0]) for use in private_uses(source)) == [2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("path", SEARCH_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_search_uses_only_public_optuna_and_hydra_interfaces(path):
    assert private_uses(path.read_text()) == []


class FakeLauncher(Launcher):
    """Launches a trial's job as its training would end: the job reads its trial from the
    sweep folder; a job with depth 2 is pruned, the first launch of trial 1 fails."""

    def __init__(self, sweep_dir: Path):
        self.sweep_dir = sweep_dir
        self.launched: list[tuple[int, list[str]]] = []

    def setup(self, *, hydra_context, task_function, config) -> None:
        pass

    def launch(self, job_overrides, initial_job_idx):
        (overrides,) = job_overrides
        number = initial_job_idx
        self.launched.append((number, list(overrides)))
        if number == 1:
            raise RuntimeError("the worker died")
        info = TrialInfo(**json.loads(trial_file(self.sweep_dir, number).read_text()))
        trial, storage = load_trial(info)
        assert trial.number == number == storage.get_trial(info.trial_id).number
        lr = float(dict(o.split("=", 1) for o in overrides)["optimizer.lr"])
        trial.report(lr, step=0)
        if "model.depth=2" in overrides:
            trial.set_user_attr(PRUNED_ATTR, 1)
        result = JobReturn(overrides=overrides, status=JobStatus.COMPLETED)
        result.return_value = lr
        return [result]


def make_sweeper(tmp_path: Path, launcher: str = "basic", **kwargs) -> OptunaSweeper:
    sweeper = OptunaSweeper(
        sampler={"_target_": "optuna.samplers.RandomSampler", "seed": 0},
        direction="maximize", study_name="search", storage=f"sqlite:///{tmp_path}/optuna.db",
        n_trials=5, params={"optimizer.lr": "interval(0.001, 0.1)",
                            "model.depth": "choice(1, 2)"},
        pruner="none", heartbeat_interval=1, **kwargs)
    sweeper.config = OmegaConf.create({
        "hydra": {"sweep": {"dir": str(tmp_path / "sweep")},
                  "runtime": {"choices": {"hydra/launcher": launcher}},
                  "launcher": {"n_jobs": 2} if launcher == "joblib" else {}},
        "logger": {"experiment_name": "seq2seq-reverse"}, "trainer": {"max_epochs": 3}})
    sweeper.launcher = FakeLauncher(tmp_path / "sweep")
    return sweeper


def test_trials_in_flight_follow_the_launcher(tmp_path):
    assert make_sweeper(tmp_path).slots() == 1
    assert make_sweeper(tmp_path, n_jobs=4).slots() == 1  # the basic launcher: this process
    assert make_sweeper(tmp_path, launcher="joblib").slots() == 2
    assert make_sweeper(tmp_path, launcher="joblib", n_jobs=3).slots() == 3


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_sweep_tells_the_study_each_result_pruning_and_failure(tmp_path, launcher):
    sweeper = make_sweeper(tmp_path, launcher)
    sweeper.sweep(["data.train_size=64"])

    study = optuna.load_study(study_name="search", storage=f"sqlite:///{tmp_path}/optuna.db")
    trials = study.get_trials()
    # trial 1's launch failed: it is retried with its parameters, and counts once
    assert len(trials) == 6 and trials[1].state == optuna.trial.TrialState.FAIL
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == 1]
    assert retry.params == trials[1].params and retry.state.is_finished()
    launched = dict(sweeper.launcher.launched)
    assert sorted(launched) == list(range(6))
    for trial in trials:
        overrides = launched[trial.number]
        assert overrides[0] == "data.train_size=64"
        assert f"model.depth={trial.params['model.depth']}" in overrides
        if trial.number == 1:
            continue
        expected = ("PRUNED" if trial.params["model.depth"] == 2 else "COMPLETE")
        assert trial.state.name == expected
        if expected == "COMPLETE":
            assert trial.value == pytest.approx(trial.params["optimizer.lr"])
    assert {t.state.name for t in trials} == {"COMPLETE", "PRUNED", "FAIL"}
    results = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert results.best_value == study.best_value and results.trials.FAIL == 1

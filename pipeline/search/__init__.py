"""Hyperparameter search on Optuna: the Hydra sweeper (``sweeper.py``) and what a trial's
job does with its trial (``trial.py``: report every epoch, stop when pruned). Here, light
enough for Hydra's plugin scan: the hand-off of a trial from the sweeper to its job."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from pipeline.files import write_json

TRIALS_DIR = "optuna_trials"
PRUNED_ATTR = "pruned_at_epoch"
REPORTER_ATTR = "reporting_seed"


@dataclass
class TrialInfo:
    """What a job needs to reach its trial."""

    storage: str
    study_name: str
    trial_id: int
    number: int
    pruner: Any = None
    pruner_args: dict = field(default_factory=dict)
    max_epochs: int | None = None


def trial_file(sweep_dir: Path, job_num: int) -> Path:
    return Path(sweep_dir) / TRIALS_DIR / f"{job_num}.json"


def write_trial_info(sweep_dir: Path, job_num: int, info: TrialInfo) -> None:
    path = trial_file(sweep_dir, job_num)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, asdict(info))


def trial_info() -> TrialInfo | None:
    """This job's trial, or None outside an Optuna sweep."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hydra = HydraConfig.get()
    path = trial_file(Path(hydra.sweep.dir), hydra.job.num)
    return TrialInfo(**json.loads(path.read_text())) if path.exists() else None

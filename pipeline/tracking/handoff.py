"""The sweep's hand-off file: what the sweep callback tells every job of a multirun.

The callback writes ``mlflow_parent_run.json`` in the sweep folder before any job starts
(parent run id, experiment id, swept keys, whether the sweep resumes an earlier one); each
job, in whatever process or node the launcher gives it, reads it from there.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

PARENT_RUN_FILE = "mlflow_parent_run.json"


@dataclass
class SweepInfo:
    """The parent run, the swept keys, whether it resumes an earlier sweep, how many jobs
    it has (None where it cannot tell) and how many run side by side."""

    run_id: str
    experiment_id: str
    swept: list[str] = field(default_factory=list)
    resume: bool = False
    total: int | None = None
    parallel: int = 1


def write_sweep_info(sweep_dir: Path, info: SweepInfo) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / PARENT_RUN_FILE).write_text(json.dumps(asdict(info)))


def sweep_info() -> SweepInfo | None:
    """This multirun's hand-off (read in a job), or None outside a sweep."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    path = Path(HydraConfig.get().sweep.dir) / PARENT_RUN_FILE
    return SweepInfo(**json.loads(path.read_text())) if path.exists() else None

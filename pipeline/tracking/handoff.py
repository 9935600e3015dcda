"""The sweep's hand-off file: what the sweep callback tells every job of a multirun.

The callback writes ``mlflow_parent_run.json`` in the sweep folder before any job starts
(parent run id, experiment id, swept keys, whether the sweep resumes an earlier one); each
job, in whatever process or node the launcher gives it, reads it from there. It is written
atomically; one that does not parse (damaged after the fact) is set aside with one line and
rebuilt from the parent run in the store, which records the sweep folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from pipeline.errors import DamagedFile
from pipeline.files import set_aside, why_damaged, write_json

PARENT_RUN_FILE = "mlflow_parent_run.json"


@dataclass
class SweepInfo:
    """The parent run, the swept keys, whether it resumes an earlier sweep, how many jobs
    it has (None where it cannot tell) and how many run side by side; at the end, where
    another process writes the sweep's summary (several hosts sharing one search), which."""

    run_id: str
    experiment_id: str
    swept: list[str] = field(default_factory=list)
    resume: bool = False
    total: int | None = None
    parallel: int = 1
    summary_by: str | None = None
    # seeds=auto (hydra/sweeper=replicates): the pilot's seeds and the cap per candidate.
    auto_seeds: list[int] | None = None


def write_sweep_info(sweep_dir: Path, info: SweepInfo) -> None:
    write_json(Path(sweep_dir) / PARENT_RUN_FILE, asdict(info))


def in_sweep() -> bool:
    """This process runs (or launches) a Hydra multirun's jobs."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sweep_info() -> SweepInfo | None:
    """This multirun's hand-off (read in a job), or None outside a sweep."""
    if not in_sweep():
        return None
    sweep_dir = Path(HydraConfig.get().sweep.dir)
    path = sweep_dir / PARENT_RUN_FILE
    if not path.exists():
        return None
    try:
        return SweepInfo(**json.loads(path.read_text()))
    except (ValueError, TypeError, UnicodeDecodeError) as err:
        info = _from_store(sweep_dir)
        if info is None:
            raise DamagedFile(path, f"{why_damaged(err)}; no sweep parent run in the store "
                                    "records this folder") from err
        set_aside(path, "the sweep's hand-off file", why_damaged(err),
                  f"rebuilt from its parent run {info.run_id}")
        write_sweep_info(sweep_dir, info)
        return info


def sweep_info_in(sweep_dir: Path) -> SweepInfo | None:
    """The hand-off in ``sweep_dir`` as written (read by the sweeper), or None."""
    try:
        return SweepInfo(**json.loads((Path(sweep_dir) / PARENT_RUN_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _from_store(sweep_dir: Path) -> SweepInfo | None:
    """The hand-off of the sweep in ``sweep_dir`` as its parent run records it (tags
    ``sweep_dir``, or ``resumed_in`` for a resumed sweep; the swept keys are its params)."""
    from mlflow import MlflowClient  # noqa: PLC0415 - MLflow: only to rebuild a damaged file

    hydra = HydraConfig.get()
    try:
        uri = hydra.callbacks.mlflow_sweep.tracking_uri
    except Exception:  # no sweep callback, or a setting it cannot resolve here
        return None
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    for tag in ("resumed_in", "sweep_dir"):
        runs = client.search_runs(
            experiments, f"tags.role = 'sweep' and tags.{tag} = '{sweep_dir}'",
            order_by=["attributes.start_time DESC"], max_results=1)
        if runs:
            jobs = hydra.launcher.get("n_jobs")
            return SweepInfo(runs[0].info.run_id, runs[0].info.experiment_id,
                             sorted(runs[0].data.params), tag == "resumed_in",
                             parallel=jobs if jobs and jobs > 0 else 1)
    return None

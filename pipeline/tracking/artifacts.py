"""What a run logs besides metrics: its config, environment and datasets, the trained model,
its failure, and the system metrics monitor."""

from __future__ import annotations

import logging
import sys
import tempfile
import time
import tomllib
import traceback
import warnings
from importlib.metadata import PackageNotFoundError, distributions, requires, version
from pathlib import Path

import mlflow
from lightning.pytorch.utilities.exceptions import SIGTERMException
from mlflow import MlflowClient
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from omegaconf import DictConfig
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pipeline.errors import DiskFull
from pipeline.tracking.naming import flatten

log = logging.getLogger(__name__)

DATASET_ATTEMPTS = 3
TEST_EXAMPLES = "test_examples.json"  # every test example's index and score (report.py)


def log_config(client: MlflowClient, run_id: str, cfg: DictConfig) -> None:
    """Params: the resolved config flattened to override paths; the Hydra files and the
    installed packages (``pip freeze``) as artifacts."""
    params = list(flatten(cfg).items())
    for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run_id, params=[mlflow.entities.Param(k, v)
                                         for k, v in params[start:start + 100]])
    freeze = sorted({f"{d.metadata['Name']}=={d.version}" for d in distributions()})
    client.log_text(run_id, "\n".join(freeze) + "\n", "environment/pip-freeze.txt")
    hydra_dir = Path(cfg.paths.run_dir) / ".hydra"
    if hydra_dir.is_dir():
        client.log_artifacts(run_id, str(hydra_dir), "hydra")


def log_datasets(client: MlflowClient, run_id: str, task: str, splits: dict) -> None:
    """Each split as an MLflow dataset input (name, digest, size), context = split name.

    ``splits`` maps a split name to (sources, targets) numpy arrays, or, for data read from
    files, to ``{"paths": [...], "digest": ...}``: the dataset's source is then its file
    (the source file of a pair) and its digest that of the content. Parallel jobs log the
    same new datasets at once; on PostgreSQL MLflow's check-then-insert then fails for one
    of them with a unique violation (a 400, not retried by its client): try again, and the
    second attempt finds the dataset and links it."""
    inputs = []
    for name, split in splits.items():
        if isinstance(split, dict):
            with warnings.catch_warnings():  # a local path reads as two kinds of local source
                warnings.simplefilter("ignore")
                source = resolve_dataset_source(split["paths"][0])
            dataset = MetaDataset(source, name=f"{task}-{name}", digest=split["digest"])
        else:
            dataset = mlflow.data.from_numpy(split[0], targets=split[1], name=f"{task}-{name}")
        inputs.append(DatasetInput(dataset._to_mlflow_entity(),
                                   [InputTag(MLFLOW_DATASET_CONTEXT, name)]))
    for attempt in range(DATASET_ATTEMPTS):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as err:
            if attempt + 1 == DATASET_ATTEMPTS or "already exists" not in str(err):
                raise
            time.sleep(0.2 * (attempt + 1))


def start_system_metrics(run_id: str, tracking_uri: str):
    """MLflow's CPU/memory (and GPU) monitor for this run: Lightning does not start it."""
    # psutil and pynvml, imported only for a run.
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor  # noqa: PLC0415

    monitor = SystemMetricsMonitor(run_id, sampling_interval=5, tracking_uri=tracking_uri)
    monitor.start()
    return monitor


def record_failure(client: MlflowClient, run_id: str, err: BaseException) -> None:
    """End the run FAILED (KILLED on Ctrl-C or SIGTERM), the message as a tag, the
    traceback as an artifact (or, where artifacts cannot be written, say so in a tag). A
    full disk is tagged ``error.disk_full`` (a resumed sweep continues such a run from its
    checkpoint); where the store itself cannot be written, the run stays RUNNING and one
    line says so."""
    try:
        client.set_tag(run_id, "error", f"{type(err).__name__}: {err}"[:5000])
        step = getattr(err, "step", None)
        if step is not None:
            client.set_tag(run_id, "error.step", str(step))
        if DiskFull.of(err):
            client.set_tag(run_id, "error.disk_full", "true")
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "traceback.txt"
                path.write_text("".join(traceback.format_exception(err)))
                client.log_artifact(run_id, str(path), "error")
        except (OSError, MlflowException) as upload:  # a full disk, an artifact store gone
            client.set_tag(run_id, "error.traceback", f"not saved: {upload}"[:5000])
        killed = isinstance(err, KeyboardInterrupt | SIGTERMException | SystemExit)
        client.set_terminated(run_id, "KILLED" if killed else "FAILED")
    except Exception as store:
        if not DiskFull.of(store):
            raise
        log.error("run %s stays RUNNING: the tracking store could not record its end (%s); "
                  "a resumed sweep continues it", run_id, DiskFull.of(store, "the tracking store"))


# Every model the project logs carries the ``pipeline`` package as code (MLflow's
# ``code_paths``, put on ``sys.path`` when the model loads), so it loads where the project is
# not installed. Its requirements then name the project's own dependencies instead of the
# project, which is not on PyPI: ``seq2seq-pipeline==<version>`` could not be installed
# where the model is served, and its code is in the model already. All of them, not only
# those loading a model imports today: the shipped package is the project's code and may
# import any of them.
PACKAGE = Path(__file__).resolve().parents[1]
PROJECT = "seq2seq-pipeline"


def project_dependencies() -> list:
    """The project's dependencies (not its extras), as ``packaging`` requirements: from the
    checkout's ``pyproject.toml`` where the package is one (an editable install's metadata is
    as old as the install), else from the installed distribution."""
    pyproject = PACKAGE.parent / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text()).get("project", {})
        if project.get("name") == PROJECT:
            return [Requirement(r) for r in project.get("dependencies", [])]
    return [r for r in map(Requirement, requires(PROJECT) or [])
            if r.marker is None or r.marker.evaluate({"extra": ""})]


def code_requirements(requirements: list[str]) -> list[str]:
    """``requirements`` for a model shipped with :data:`PACKAGE`: the project's own
    distribution replaced by its dependencies, each pinned to the version installed here (as
    declared where it is not installed) and named once."""
    out = [r for r in requirements if canonicalize_name(Requirement(r).name) != PROJECT]
    named = {canonicalize_name(Requirement(r).name) for r in out}
    for need in project_dependencies():
        if canonicalize_name(need.name) in named:
            continue
        named.add(canonicalize_name(need.name))
        try:
            out.append(f"{need.name}=={version(need.name)}")
        except PackageNotFoundError:
            out.append(str(need))
    return out


def log_model(tracking_uri: str, run_id: str, net, requirements: list[str]) -> str:
    """The trained network (a vector task's) as an MLflow PyTorch model, pickled with the
    ``pipeline`` package beside it (MLflow's pickle-free ``pt2`` format keeps only
    ``forward``: ``generate`` needs the Python class); see :func:`log_to_run`."""
    return log_to_run(tracking_uri, run_id, lambda: mlflow.pytorch.log_model(
        net, name="model", serialization_format="pickle", code_paths=[str(PACKAGE)],
        pip_requirements=code_requirements(requirements)))


def log_to_run(tracking_uri: str, run_id: str, log) -> str:
    """Call ``log`` (an MLflow ``log_model``) inside the run; returns the model's URI, also
    set as the run's ``model_uri`` tag. The run stays RUNNING (MLflow's fluent
    ``start_run`` would end it FINISHED; its owner closes it once everything is logged).
    The import path stays as it was: MLflow loads the model it saved to check its input
    example, which puts the saved model's ``code/`` (a temporary folder) on ``sys.path``."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.start_run(run_id=run_id)
    path = list(sys.path)
    try:
        info = log()
    finally:
        sys.path[:] = path
        mlflow.end_run(status="RUNNING")
    MlflowClient(tracking_uri).set_tag(run_id, "model_uri", info.model_uri)
    return info.model_uri

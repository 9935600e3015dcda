"""What a run logs besides metrics: its config, environment and datasets, the trained model,
its failure, and the system metrics monitor."""

from __future__ import annotations

import logging
import tempfile
import time
import traceback
import warnings
from importlib.metadata import distributions
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

from pipeline.files import as_disk_full, disk_full
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
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

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
        if disk_full(err):
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
        if not disk_full(store):
            raise
        log.error("run %s stays RUNNING: the tracking store could not record its end (%s); "
                  "a resumed sweep continues it", run_id, as_disk_full(store, "the tracking store"))


def log_model(tracking_uri: str, run_id: str, net, requirements: list[str]) -> str:
    """The trained network (a vector task's) as an MLflow PyTorch model (pickle:
    ``generate`` keeps working); see :func:`log_to_run`."""
    return log_to_run(tracking_uri, run_id, lambda: mlflow.pytorch.log_model(
        net, name="model", serialization_format="pickle", pip_requirements=requirements))


def log_to_run(tracking_uri: str, run_id: str, log) -> str:
    """Call ``log`` (an MLflow ``log_model``) inside the run; returns the model's URI, also
    set as the run's ``model_uri`` tag. The run stays RUNNING (MLflow's fluent
    ``start_run`` would end it FINISHED; its owner closes it once everything is logged)."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.start_run(run_id=run_id)
    try:
        info = log()
    finally:
        mlflow.end_run(status="RUNNING")
    MlflowClient(tracking_uri).set_tag(run_id, "model_uri", info.model_uri)
    return info.model_uri

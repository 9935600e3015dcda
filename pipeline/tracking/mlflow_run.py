"""One training's MLflow run: logger, names, tags, params and artifacts."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import tempfile
import time
import traceback
from importlib.metadata import distributions
from pathlib import Path
from typing import Any

import mlflow
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag, Run
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from omegaconf import DictConfig, OmegaConf

from pipeline.config import ConfigError, check_tracking_uri

PARENT_RUN_FILE = "mlflow_parent_run.json"
MAX_PARAM_LENGTH = 6000
# Overrides that say where results go, not what is trained: left out of run names.
_INFRA_PREFIXES = ("logger.", "paths.", "hydra.", "trainer.enable_", "hparams_search")
# Flattened keys that only place outputs: left out of the config hash.
_PLACEMENT_KEYS = ("paths.", "logger.", "tags", "trainer.default_root_dir",
                   "callbacks.model_checkpoint.dirpath", "callbacks.on_exception.dirpath",
                   "data.cache_dir", "sweep_id")
# Where a run's checkpoints are, newest first: what a resumed sweep continues from.
RESUME_FILES = ("interrupted.ckpt", "last.ckpt")
DATASET_ATTEMPTS = 3
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SECRET = re.compile(r"pass(word|wd)?|secret|token|api_?key|credential", re.IGNORECASE)


def flatten(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as {override path: value}, e.g. ``{"model.depth": "2"}``; values
    of keys that look like secrets (password, token, ...) are masked."""
    flat: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            flat[prefix] = json.dumps(node) if isinstance(node, list | dict) else str(node)

    walk(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), "")
    return {k: "***" if SECRET.search(k.rsplit(".", 1)[-1]) else v[:MAX_PARAM_LENGTH]
            for k, v in flat.items()}


def config_hash(cfg: DictConfig) -> str:
    """A digest of everything that decides the result (not where outputs go): runs with
    the same hash should agree, and a resumed sweep skips finished ones by it."""
    flat = {k: v for k, v in flatten(cfg).items() if not k.startswith(_PLACEMENT_KEYS)}
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:16]


def git_dirty() -> str:
    """"true"/"false": uncommitted changes in the project's checkout ("unknown" outside git)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                             cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return "unknown" if out.returncode else str(bool(out.stdout.strip())).lower()


def variant_name(model: DictConfig) -> str:
    """A short readable name of a model config, e.g. ``seq2seq-lstm-d2-peek-additive``."""
    depth = model.depth
    depth = f"d{depth}" if isinstance(depth, int) else f"d{depth[0]}x{depth[1]}"
    family = "simple" if not model.feedback else "seq2seq"
    parts = [family, str(model.cell.value if hasattr(model.cell, "value") else model.cell), depth]
    if model.bidirectional:
        parts.append("bi")
    if not model.bridge and model.feedback:
        parts.append("nobridge")
    if model.peek:
        parts.append("peek")
    attention = str(getattr(model.attention, "value", model.attention))
    if attention != "none":
        parts.append(attention)
    return "-".join(parts)


def override_key(override: str) -> str:
    """``+model.depth=2`` -> ``model.depth``."""
    return override.lstrip("+~").partition("=")[0]


def override_values(overrides: list[str]) -> dict[str, str]:
    """``["+model.depth=1,2", "arch=cho"]`` -> ``{"model.depth": "1,2", "arch": "cho"}``."""
    return {override_key(o): o.partition("=")[2] for o in overrides}


def checkpoint_dir(cfg: DictConfig) -> str | None:
    """Where this run's ModelCheckpoint writes, or None without one."""
    return OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath")


def task_overrides() -> list[str]:
    """The command-line overrides of this job (sweep values included)."""
    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def run_name(cfg: DictConfig) -> str:
    """The overrides the sweep varies (in a sweep), or those that change what is trained;
    the variant's name when there are none."""
    swept = sweep_info().get("swept")
    wanted = [
        o for o in task_overrides()
        if (override_key(o) in swept if swept
            else not override_key(o).startswith(_INFRA_PREFIXES))
    ]
    return " ".join(wanted)[:250] if wanted else variant_name(cfg.model)


def sweep_info() -> dict:
    """What the sweep callback wrote for this multirun (parent run id, swept keys), or {}."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return {}
    path = Path(HydraConfig.get().sweep.dir) / PARENT_RUN_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def ensure_store(tracking_uri: str) -> None:
    """Make the folder of an embedded SQLite store (MLflow creates the file itself)."""
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)


class TrackingServerGone(RuntimeError):
    """The tracking server stopped answering mid-run, after MLflow's own retries."""

    def __init__(self, tracking_uri: str, cause: BaseException, checkpoints: str):
        super().__init__(
            f"the MLflow tracking server {tracking_uri} stopped answering "
            f"({type(cause).__name__} after MLflow's retries): training stopped; its "
            f"checkpoints are in {checkpoints}; the MLflow run stays RUNNING"
        )


def server_gone(tracking_uri: str) -> bool:
    """True for a tracking server (http, https) that no longer answers its health check."""
    if not tracking_uri.startswith(("http://", "https://")):
        return False
    try:
        check_tracking_uri(tracking_uri)
    except ConfigError:
        return True
    return False


class ServerAwareMLFlowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger, but a training that failed because the tracking server went
    away skips the final uploads (checkpoints, status): each would wait out the retries."""

    def finalize(self, status: str = "success") -> None:
        if status == "failed" and server_gone(self._tracking_uri):
            return
        super().finalize(status)


def previous_attempt(cfg: DictConfig) -> Run | None:
    """In a resumed sweep (``sweep_id=...``), this job's latest earlier child run: the one
    with the same config hash that no later attempt superseded; else None."""
    info = sweep_info()
    if not info.get("resume"):
        return None
    runs = MlflowClient(cfg.logger.tracking_uri).search_runs(
        [info["experiment_id"]],
        filter_string=f"tags.mlflow.parentRunId = '{info['run_id']}' "
                      f"and tags.config_hash = '{config_hash(cfg)}'",
        order_by=["attributes.start_time DESC"],
    )
    runs = [r for r in runs if "superseded_by" not in r.data.tags]
    return runs[0] if runs else None


def resume_checkpoint(run: Run) -> str | None:
    """The newest checkpoint an unfinished run left (``interrupted`` or ``last``), or None."""
    folder = Path(run.data.tags.get("checkpoint_dir", "/nonexistent"))
    found = [folder / name for name in RESUME_FILES if (folder / name).is_file()]
    return str(max(found, key=lambda p: p.stat().st_mtime)) if found else None


def supersede(client: MlflowClient, old: Run, new_run_id: str) -> None:
    """Mark an earlier attempt that is run again from scratch (it failed, or was killed
    before any checkpoint): closed KILLED if a SIGKILL left it RUNNING, and left out of the
    sweep's summary."""
    client.set_tag(old.info.run_id, "superseded_by", new_run_id)
    if old.info.status == "RUNNING":
        client.set_terminated(old.info.run_id, "KILLED")


def make_logger(cfg: DictConfig, run_id: str | None = None) -> MLFlowLogger:
    """Lightning's MLFlowLogger for this job: readable name, tags, child of the sweep's run;
    with ``run_id``, the logger continues that run (a resumed job) and tags it afresh."""
    ensure_store(cfg.logger.tracking_uri)
    tags = {
        "variant": variant_name(cfg.model),
        "task": cfg.data.task,
        "overrides": " ".join(task_overrides())[:5000],
        "monitor": cfg.monitor,
        "monitor_mode": cfg.monitor_mode,
        "config_hash": config_hash(cfg),
        "host": socket.gethostname(),
        "git.dirty": git_dirty(),
        "checkpoint_dir": checkpoint_dir(cfg) or "",
    }
    tags.update({f"tag.{t}": "true" for t in cfg.get("tags") or []})
    parent = sweep_info().get("run_id")
    if parent:
        tags["mlflow.parentRunId"] = parent
    logger = instantiate(cfg.logger, run_name=run_name(cfg), tags=tags, run_id=run_id)
    if run_id:
        client = logger.experiment
        client.update_run(run_id, status="RUNNING")
        for key in ("checkpoint_dir", "overrides", "host", "git.dirty"):
            client.set_tag(run_id, key, tags[key])
    return logger


def log_config(logger: MLFlowLogger, cfg: DictConfig) -> None:
    """Params: the resolved config flattened to override paths; the Hydra files and the
    installed packages (``pip freeze``) as artifacts."""
    logger.log_hyperparams(flatten(cfg))
    freeze = sorted({f"{d.metadata['Name']}=={d.version}" for d in distributions()})
    logger.experiment.log_text(
        logger.run_id, "\n".join(freeze) + "\n", "environment/pip-freeze.txt"
    )
    hydra_dir = Path(cfg.paths.run_dir) / ".hydra"
    if hydra_dir.is_dir():
        logger.experiment.log_artifacts(logger.run_id, str(hydra_dir), "hydra")


def log_datasets(client: MlflowClient, run_id: str, task: str, splits: dict) -> None:
    """Each split as an MLflow dataset input (name, digest, size), context = split name.

    ``splits`` maps a split name to (sources, targets) numpy arrays. Parallel jobs log the
    same new datasets at once; on PostgreSQL MLflow's check-then-insert then fails for one
    of them with a unique violation (a 400, not retried by its client): try again, and the
    second attempt finds the dataset and links it."""
    inputs = []
    for name, (sources, targets) in splits.items():
        dataset = mlflow.data.from_numpy(sources, targets=targets, name=f"{task}-{name}")
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
    traceback as an artifact (or, where artifacts cannot be written, say so in a tag)."""
    client.set_tag(run_id, "error", f"{type(err).__name__}: {err}"[:5000])
    step = getattr(err, "step", None)
    if step is not None:
        client.set_tag(run_id, "error.step", str(step))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "traceback.txt"
            path.write_text("".join(traceback.format_exception(err)))
            client.log_artifact(run_id, str(path), "error")
    except (OSError, MlflowException) as upload:  # a full disk, an artifact store gone
        client.set_tag(run_id, "error.traceback", f"not saved: {upload}"[:5000])
    killed = isinstance(err, KeyboardInterrupt | SIGTERMException | SystemExit)
    client.set_terminated(run_id, "KILLED" if killed else "FAILED")


def log_model(
    tracking_uri: str, run_id: str, net, requirements: list[str], extra: dict | None = None
) -> str:
    """The trained network as an MLflow PyTorch model (pickle: ``generate`` keeps working),
    with ``extra`` JSON files beside it (the vocabularies). Returns the model's URI, also
    set as the run's ``model_uri`` tag."""
    mlflow.set_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_id=run_id):
        files = []
        for name, content in (extra or {}).items():
            files.append(str(Path(tmp) / name))
            Path(files[-1]).write_text(json.dumps(content))
        info = mlflow.pytorch.log_model(
            net, name="model", serialization_format="pickle", pip_requirements=requirements,
            extra_files=files or None,
        )
        mlflow.set_tag("model_uri", info.model_uri)
    return info.model_uri

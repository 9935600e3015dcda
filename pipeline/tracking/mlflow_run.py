"""One training's MLflow run: logger, names, tags, params and artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import MLFlowLogger
from omegaconf import DictConfig, OmegaConf

PARENT_RUN_FILE = "mlflow_parent_run.json"
MAX_PARAM_LENGTH = 6000
# Overrides that say where results go, not what is trained: left out of run names.
_INFRA_PREFIXES = ("logger.", "paths.", "hydra.", "trainer.enable_", "hparams_search")


def flatten(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as {override path: value}, e.g. ``{"model.depth": "2"}``."""
    flat: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            flat[prefix] = json.dumps(node) if isinstance(node, list | dict) else str(node)

    walk(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), "")
    return {k: v[:MAX_PARAM_LENGTH] for k, v in flat.items()}


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
        if (o.split("=")[0].lstrip("+~") in swept if swept
            else not o.lstrip("+~").startswith(_INFRA_PREFIXES))
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


def make_logger(cfg: DictConfig) -> MLFlowLogger:
    """Lightning's MLFlowLogger for this job: readable name, tags, child of the sweep's run."""
    ensure_store(cfg.logger.tracking_uri)
    tags = {
        "variant": variant_name(cfg.model),
        "task": cfg.data.task,
        "overrides": " ".join(task_overrides())[:5000],
        "monitor": cfg.monitor,
        "monitor_mode": cfg.monitor_mode,
    }
    tags.update({f"tag.{t}": "true" for t in cfg.get("tags") or []})
    parent = sweep_info().get("run_id")
    if parent:
        tags["mlflow.parentRunId"] = parent
    return instantiate(cfg.logger, run_name=run_name(cfg), tags=tags)


def log_config(logger: MLFlowLogger, cfg: DictConfig) -> None:
    """Params: the resolved config flattened to override paths; the Hydra files as artifacts."""
    logger.log_hyperparams(flatten(cfg))
    hydra_dir = Path(cfg.paths.run_dir) / ".hydra"
    if hydra_dir.is_dir():
        logger.experiment.log_artifacts(logger.run_id, str(hydra_dir), "hydra")


def log_model(tracking_uri: str, run_id: str, net, requirements: list[str]) -> None:
    """The trained network as an MLflow PyTorch model (pickle: ``generate`` keeps working)."""
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=run_id):
        mlflow.pytorch.log_model(
            net, name="model", serialization_format="pickle", pip_requirements=requirements
        )

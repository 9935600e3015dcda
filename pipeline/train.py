"""``python -m pipeline.train [overrides]``: compose, train, test, track; returns the metric.

config -> data + model -> trainer -> tracking. With ``-m`` Hydra runs a sweep; the sweep
callback (``conf/hydra/default.yaml``) makes the MLflow parent run.
"""

from __future__ import annotations

import logging
import os
import sys
from importlib.metadata import version

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf, open_dict

from pipeline.config import ConfigError, validate
from pipeline.data import DataSpec, Seq2SeqDataModule
from pipeline.data.tasks import TASKS
from pipeline.module import Seq2SeqModule
from pipeline.tracking import mlflow_run

log = logging.getLogger(__name__)
# Token models may decode this many steps past the longest training target.
DECODE_MARGIN = 5


def resolve_monitor(cfg: DictConfig) -> None:
    """Fill ``monitor``/``monitor_mode`` by the task's kind where the config leaves them null."""
    tokens = TASKS[cfg.data.task].kind == "tokens"
    with open_dict(cfg):
        cfg.monitor = cfg.monitor or ("val/seq_acc" if tokens else "val/loss")
        cfg.monitor_mode = cfg.monitor_mode or ("max" if tokens else "min")


def net_config(cfg: DictConfig, spec: DataSpec) -> dict:
    """The model's settings plus what the data dictates (kind, input and output sizes)."""
    net = OmegaConf.to_container(cfg.model, resolve=True, enum_to_str=True)
    net.update(kind=spec.kind, input_dim=spec.input_dim, output_dim=spec.output_dim)
    if spec.kind == "vectors":
        net["output_length"] = spec.max_target_len
    return net


def build(cfg: DictConfig) -> tuple[Seq2SeqDataModule, Seq2SeqModule]:
    """The data module (splits built or read from the cache) and the LightningModule."""
    datamodule: Seq2SeqDataModule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup()
    spec = datamodule.spec
    module = Seq2SeqModule(
        net=net_config(cfg, spec),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.scheduler else None,
        monitor=cfg.monitor,
        beam_size=cfg.eval.beam_size,
        length_penalty=cfg.eval.length_penalty,
        max_decode_len=spec.max_target_len + DECODE_MARGIN,
        references=spec.has_references,
        max_source_len=spec.max_source_len,
        mase_scale=spec.mase_scale,
    )
    return datamodule, module


def best_score(checkpoint: ModelCheckpoint) -> float:
    """The best checkpoint's monitored value (read from the file after ``ddp_spawn``, whose
    ranks do not send it back to the launching process)."""
    if checkpoint.best_model_score is not None:
        return float(checkpoint.best_model_score)
    state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)
    return next(float(v["best_model_score"]) for k, v in state["callbacks"].items()
                if k.startswith("ModelCheckpoint"))


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, test the best checkpoint, log the model. Returns the last epoch's metrics, the
    test metrics and ``best/<monitor>``, the monitored metric of the best checkpoint."""
    validate(cfg)
    resolve_monitor(cfg)
    L.seed_everything(cfg.seed, workers=True)
    datamodule, module = build(cfg)
    logger = mlflow_run.make_logger(cfg)
    mlflow_run.log_config(logger, cfg)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    trainer: L.Trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks)
    trainer.fit(module, datamodule=datamodule)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint else ""
    if best:
        metrics[f"best/{cfg.monitor}"] = best_score(checkpoint)
    trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=False)
    metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    if trainer.is_global_zero:
        if best:
            module = Seq2SeqModule.load_from_checkpoint(best, weights_only=False)
        requirements = [f"{p}=={version(p)}" for p in ("torch", "seq2seq-pipeline")]
        mlflow_run.log_model(cfg.logger.tracking_uri, logger.run_id, module.net.cpu(), requirements)
        test_metric = cfg.monitor.replace("val/", "test/")
        log.info("best %s: %s, %s: %s", cfg.monitor, metrics.get(f"best/{cfg.monitor}"),
                 test_metric, metrics.get(test_metric))
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the monitored metric for sweepers that optimise it.

    A bad setting ends a single run with one line naming the key (exit status 2; the
    traceback with HYDRA_FULL_ERROR=1); in a sweep it fails that job only.
    """
    try:
        return train(cfg).get(f"best/{cfg.monitor}")
    except ConfigError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        log.error("%s", err)
        sys.exit(2)


if __name__ == "__main__":
    main()

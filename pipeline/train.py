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
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from pipeline.config import ConfigError, check_environment, validate
from pipeline.data import DataSpec, Seq2SeqDataModule
from pipeline.data.tasks import TASKS
from pipeline.module import Seq2SeqModule
from pipeline.predict import VOCAB_FILE, decode
from pipeline.tracking import mlflow_run, plots
from pipeline.tracking.sweep_callback import MLflowSweepCallback

log = logging.getLogger(__name__)
# Token models may decode this many steps past the longest training target.
DECODE_MARGIN = 5
REPORT_EXAMPLES = 50  # first test examples in the sample table
HEATMAPS = 4  # of which this many get an attention heatmap
BUCKETS = 5  # input-length buckets of test/seq_acc/len_* unless eval.bucket_width says


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
        bucket_width=cfg.eval.get("bucket_width") or -(-spec.max_source_len // BUCKETS),
        mase_scale=spec.mase_scale,
        cuda_graphs=cfg.accel.cuda_graphs,
    )
    return datamodule, module


def pin_threads(cfg: DictConfig) -> None:
    """``threads`` torch threads; by default the machine's cores shared among the parallel
    jobs of a joblib sweep, so side-by-side jobs do not fight over cores. On a GPU, the
    fp32 matmul precision (``accel.matmul_precision``)."""
    threads = cfg.get("threads")
    if threads is None and HydraConfig.initialized():
        jobs = HydraConfig.get().launcher.get("n_jobs")
        if jobs and jobs > 0:
            threads = max(1, (os.cpu_count() or 1) // jobs)
    if threads:
        torch.set_num_threads(threads)
    if str(cfg.trainer.accelerator) in ("gpu", "cuda"):
        torch.set_float32_matmul_precision(cfg.accel.matmul_precision)


def best_score(checkpoint: ModelCheckpoint) -> float:
    """The best checkpoint's monitored value (read from the file after ``ddp_spawn``, whose
    ranks do not send it back to the launching process)."""
    if checkpoint.best_model_score is not None:
        return float(checkpoint.best_model_score)
    state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)
    return next(float(v["best_model_score"]) for k, v in state["callbacks"].items()
                if k.startswith("ModelCheckpoint"))


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, test the best checkpoint, log the model and a report. Returns the last epoch's
    metrics, the test metrics and ``best/<monitor>`` (the best checkpoint's monitored value).

    Any failure (a NaN loss, Ctrl-C, a crash) ends the MLflow run FAILED (KILLED on Ctrl-C)
    with the error as a tag and the traceback as an artifact, then propagates. In a resumed
    sweep a config that already finished is skipped (its logged metrics are returned) and
    an interrupted one continues in its own run from its newest checkpoint.
    """
    validate(cfg)
    check_environment(cfg)
    resolve_monitor(cfg)
    pin_threads(cfg)
    previous = mlflow_run.previous_attempt(cfg)
    if previous is not None and previous.info.status == "FINISHED":
        log.info("skipped: this config already finished in run %s", previous.info.run_id)
        return dict(previous.data.metrics)
    resume_from = mlflow_run.resume_checkpoint(previous) if previous else None
    L.seed_everything(cfg.seed, workers=True)
    datamodule, module = build(cfg)
    logger = mlflow_run.make_logger(cfg, run_id=previous.info.run_id if resume_from else None)
    client, run_id = logger.experiment, logger.run_id
    if previous is not None and not resume_from:
        mlflow_run.supersede(client, previous, run_id)
    # Ranks that SLURM or torchrun started run this too; only rank 0 has a real run.
    monitor = (mlflow_run.start_system_metrics(run_id, cfg.logger.tracking_uri)
               if rank_zero_only.rank == 0 else None)
    gone = False  # the tracking server went away
    try:
        if resume_from:
            log.info("continuing run %s from %s", run_id, resume_from)
            client.set_tag(run_id, "resumed_from", resume_from)
        else:
            mlflow_run.log_config(logger, cfg)
            splits = {split: datamodule.arrays(split) for split in ("train", "val", "test")}
            mlflow_run.log_datasets(client, run_id, cfg.data.task, splits)
        callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
        trainer: L.Trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks)
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=False)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        checkpoint = trainer.checkpoint_callback
        best = checkpoint.best_model_path if checkpoint else ""
        if best:
            metrics[f"best/{cfg.monitor}"] = best_score(checkpoint)
            client.log_metric(run_id, f"best/{cfg.monitor}", metrics[f"best/{cfg.monitor}"])
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        if trainer.is_global_zero:
            if best:
                module = Seq2SeqModule.load_from_checkpoint(best, weights_only=False)
            publish(cfg, client, run_id, module.net.cpu().eval(), datamodule, metrics)
    except BaseException as err:
        gone = mlflow_run.server_gone(cfg.logger.tracking_uri)
        if gone:  # nothing more can be recorded; say so in one line
            raise mlflow_run.TrackingServerGone(
                cfg.logger.tracking_uri, err,
                mlflow_run.checkpoint_dir(cfg) or cfg.paths.run_dir) from err
        mlflow_run.record_failure(client, run_id, err)
        raise
    finally:
        if monitor is not None and not gone:  # after the server went away, its last
            monitor.finish()  # upload would wait out MLflow's retries once more
    return metrics


def publish(cfg, client, run_id: str, net, datamodule: Seq2SeqDataModule, metrics) -> None:
    """Log the model (with its vocabularies) and the report: attention heatmaps of a few
    fixed test examples, sample predictions as an MLflow table, accuracy by input length."""
    vocabs = datamodule.vocabs
    extra = None if vocabs is None else {
        VOCAB_FILE: {"source": vocabs[0].itos, "target": vocabs[1].itos}
    }
    requirements = [f"{p}=={version(p)}" for p in ("torch", "seq2seq-pipeline")]
    mlflow_run.log_model(cfg.logger.tracking_uri, run_id, net, requirements, extra)
    test_metric = cfg.monitor.replace("val/", "test/")
    log.info("best %s: %s, %s: %s", cfg.monitor, metrics.get(f"best/{cfg.monitor}"),
             test_metric, metrics.get(test_metric))
    if vocabs is None:
        return
    test = datamodule.dataset("test")
    rows = [test[i] for i in range(min(REPORT_EXAMPLES, len(test)))]
    sources = [vocabs[0].decode(r["src"]) for r in rows]
    targets = [vocabs[1].decode(r["tgt"]) for r in rows]
    examples = decode(net, sources, vocabs, datamodule.spec.max_target_len + DECODE_MARGIN,
                      cfg.eval.beam_size, targets)
    client.log_table(run_id, {
        "input": [" ".join(e.source) for e in examples],
        "target": [" ".join(e.target) for e in examples],
        "prediction": [" ".join(e.prediction) for e in examples],
        "correct": [e.prediction == e.target for e in examples],
    }, "samples.json")
    for i, e in enumerate(examples[:HEATMAPS]):
        if e.attention is not None:
            fig = plots.attention_heatmap(e.attention, e.source, [*e.prediction, "</s>"])
            client.log_figure(run_id, fig, f"plots/attention_{i}.png")
            plots.plt.close(fig)
    curve = plots.bucket_curves(metrics)
    if len(curve):
        fig = plots.accuracy_by_length({"test": curve})
        client.log_figure(run_id, fig, "plots/accuracy_by_length.png")
        plots.plt.close(fig)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the monitored metric for sweepers that optimise it.

    A bad setting ends a single run with one line naming the key (exit status 2; the
    traceback with HYDRA_FULL_ERROR=1); so does a tracking server that goes away mid-run
    (status 3). In a sweep a failing job is logged and returns NaN, so the others still
    run; the sweep exits 1 at the end if any job failed.
    """
    sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        return train(cfg).get(f"best/{cfg.monitor}")
    except Exception as err:
        one_line = isinstance(err, ConfigError | mlflow_run.TrackingServerGone)
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or not (sweep or one_line):
            raise
        if not sweep:
            log.error("%s", err)
            sys.exit(2 if isinstance(err, ConfigError) else 3)
        log.error("job failed, the sweep goes on: %s: %s", type(err).__name__, err)
        _failed_jobs.append(HydraConfig.get().job.num)
        return float("nan")


_failed_jobs: list[int] = []  # jobs of this process's sweep that failed


if __name__ == "__main__":
    main()
    sys.exit(1 if _failed_jobs or MLflowSweepCallback.failed_jobs else 0)

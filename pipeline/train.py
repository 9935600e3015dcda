"""``python -m pipeline.train [overrides]``: compose, build, fit, test; returns the metric.

config -> data + model -> trainer -> tracking. With ``-m`` Hydra runs a sweep; the sweep
callback (``conf/hydra/default.yaml``) makes the MLflow parent run.
"""

from __future__ import annotations

import json
import logging
import shlex
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import DictConfig

from pipeline import console
from pipeline.build import build, replicates, settle
from pipeline.errors import FATAL, Pruned
from pipeline.logs import job_in_sweep, one_console, quiet
from pipeline.tracking import progress
from pipeline.tracking.outcome import JobOutcome
from pipeline.tracking.store import run_where

log = logging.getLogger(__name__)


@dataclass
class Trained:
    """One replicate's run: what it logged, and whether a resumed sweep found it complete."""

    metrics: dict[str, float]
    run_id: str | None  # None on a rank other than 0 (rank 0 owns the run)
    skipped: bool = False
    example: str | None = None  # a test source, as predict reads it


def train(cfg: DictConfig) -> dict[str, float]:
    """Train every replicate of this configuration (``seeds``: one run each); returns the
    mean over replicates of each metric they logged (their only values with ``seeds=1``)."""
    return mean_metrics(train_replicates(cfg))


def mean_metrics(results: list[Trained]) -> dict[str, float]:
    keys = set.intersection(*(set(r.metrics) for r in results))
    return {k: sum(r.metrics[k] for r in results) / len(results) for k in keys}


def train_replicates(cfg: DictConfig) -> list[Trained]:
    """Each replicate's run, in seed order. A replicate that fails ends its run FAILED and
    the others still run; the first such error is raised at the end. A bad setting stops
    before any run exists. In a sweep each replicate leaves its progress record
    (``tracking/progress.py``), which the sweep's display reads."""
    settle(cfg)
    results, errors = [], []
    for i, replicate in enumerate(replicates(cfg)):
        record = progress.Recorder(replicate)
        record.start()
        try:
            result = train_one(replicate)
        except Pruned:
            record.end("PRUNED", runs=cfg.seeds - i)
            raise  # a pruned trial stops: its other replicates do not run
        except Exception as err:
            record.end("FAILED", error=err)
            if isinstance(err, FATAL):
                raise  # the next replicates would meet the same
            errors.append(err)
            continue
        record.end("SKIPPED" if result.skipped else "FINISHED", result.metrics,
                   run_id=result.run_id)
        results.append(result)
    if errors:
        raise errors[0]
    return results


def train_one(cfg: DictConfig) -> Trained:
    """Fit, test the best checkpoint, log the model and the report (the ``report``
    callback). Returns the run and what it logged: the last epoch's metrics, the test
    metrics and ``best/<monitor>``, the best checkpoint's monitored value.

    Every object is built before the MLflow run exists. The run is FINISHED only once
    everything is logged; any failure ends it FAILED (KILLED on Ctrl-C) with the error as a
    tag and the traceback as an artifact, then propagates. In a resumed sweep a complete
    earlier attempt is skipped (its metrics are returned) and an unfinished one continues in
    its own run from its newest checkpoint. A search trial that its pruner stops
    (``pipeline/search``) raises ``Pruned`` after fit; its run ends KILLED, tagged ``pruned``.
    """
    # Lightning, MLflow and Optuna take seconds to import: only once the settings are good.
    import lightning as L  # noqa: PLC0415

    one_console()
    from pipeline.search.trial import pruned_epoch  # noqa: PLC0415
    from pipeline.tracking import resume  # noqa: PLC0415
    from pipeline.tracking.run import tracked_run  # noqa: PLC0415

    previous = resume.previous_attempt(cfg)
    if resume.complete(previous):
        log.info("skipped: this config already finished in run %s", previous.info.run_id)
        return Trained(dict(previous.data.metrics), previous.info.run_id, skipped=True)
    resume_from = resume.resume_checkpoint(previous) if resume.resumable(previous) else None
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    parts = build(cfg)
    with tracked_run(cfg, parts.trainer, parts.datamodule, previous, resume_from) as run:
        parts.trainer.fit(parts.module, datamodule=parts.datamodule, ckpt_path=resume_from,
                          weights_only=False)
        pruned = pruned_epoch(parts.trainer)
        if pruned:  # a search trial its pruner stopped: no test, the run ends KILLED
            raise Pruned(pruned)
        checkpoint = parts.trainer.checkpoint_callback
        best = checkpoint.best_model_path if checkpoint else ""
        parts.trainer.test(parts.module, datamodule=parts.datamodule, ckpt_path=best or None,
                           weights_only=False, verbose=False)
    examples = parts.datamodule.source_texts("test", 1)
    return Trained(run.metrics(), run.run_id, example=examples[0] if examples else None)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the monitored metric for sweepers that optimise it (NaN
    for a job that failed: the sweep goes on). See ``pipeline.tracking.outcome``."""
    quiet()  # again: a launcher's worker process runs this function without this module
    with JobOutcome(cfg) as job:
        if job.in_sweep:
            job_in_sweep()  # the sweep's display reports each replicate
        results = train_replicates(cfg)
        job.metrics = mean_metrics(results)
        if not job.in_sweep:
            finish_single(cfg, results)
    return job.value


def finish_single(cfg: DictConfig, results: list[Trained]) -> None:
    """A training outside a sweep: its models registered under the experiment's name (so
    ``models:/<experiment>/latest`` is the newest), then its test scores and where its run,
    model and the commands to use it are, on stdout."""
    from pipeline.tracking.registry import register_run_model  # noqa: PLC0415 - MLflow

    for result in results:
        if result.run_id is None:  # a rank other than 0: rank 0 owns the run and reports it
            continue
        version = register_run_model(cfg.logger.tracking_uri, result.run_id,
                                     cfg.logger.experiment_name)
        console.print_result(run_result(cfg, result, version))


def run_result(cfg: DictConfig, result: Trained, version) -> console.RunResult:
    """A finished training's scores and where its run, model and commands are."""
    from mlflow import MlflowClient  # noqa: PLC0415 - seconds to import: once a run ended

    uri = cfg.logger.tracking_uri
    run = MlflowClient(uri).get_run(result.run_id)
    where = [("run", run_where(uri, run.info.experiment_id, result.run_id))]
    model = run.data.tags.get("model_uri")
    if version is not None:
        name = cfg.logger.experiment_name
        latest = f"models:/{name}/latest"
        where.append(("model", f"models:/{name}/{version.version}  (now {latest})"))
        store = uri != f"sqlite:///{Path('outputs').resolve()}/mlflow.db"
        if result.example is not None:
            inputs = shlex.quote(f"inputs=[{json.dumps(result.example)}]")
            where.append(("predict", f"python -m pipeline.predict model_uri={latest} {inputs}"
                          + (f" tracking_uri={shlex.quote(uri)}" if store else "")))
            where.append(("serve", f"make serve MODEL={latest}"
                          + (f" TRACKING_URI={shlex.quote(uri)}" if store else "")))
    elif model:
        where.append(("model", model))
    monitor = cfg.monitor
    best = result.metrics.get(f"best/{monitor}")
    return console.RunResult(result.metrics, (monitor, best) if best is not None else None,
                             where)


quiet()  # before any library logs: its lines go to the job's log file

if __name__ == "__main__":
    main()  # a sweep with failed jobs exits 1 (its callback: tracking/sweep_callback.py)

"""``python -m pipeline.train [overrides]``: compose, build, fit, test; returns the metric.

config -> data + model -> trainer -> tracking. With ``-m`` Hydra runs a sweep; the sweep
callback (``conf/hydra/default.yaml``) makes the MLflow parent run.
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from pipeline.build import build, replicates, settle
from pipeline.config import ConfigError
from pipeline.files import DiskFull
from pipeline.logs import one_console, quiet
from pipeline.search import Pruned
from pipeline.tracking.outcome import JobOutcome
from pipeline.tracking.store import StoreError, TrackingServerGone

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Train every replicate of this configuration (``seeds``: one run each); returns the
    mean over replicates of each metric they logged (their only values with ``seeds=1``).

    A replicate that fails ends its run FAILED and the others still run; the first such
    error is raised at the end. A bad setting stops before any run exists.
    """
    settle(cfg)
    results, errors = [], []
    for replicate in replicates(cfg):
        try:
            results.append(train_one(replicate))
        except (ConfigError, StoreError, TrackingServerGone, DiskFull):
            raise  # the next replicates would meet the same
        except Pruned:
            raise  # a pruned trial stops: its other replicates do not run
        except Exception as err:
            errors.append(err)
    if errors:
        raise errors[0]
    keys = set.intersection(*(set(r) for r in results))
    return {k: sum(r[k] for r in results) / len(results) for k in keys}


def train_one(cfg: DictConfig) -> dict[str, float]:
    """Fit, test the best checkpoint, log the model and the report (the ``report``
    callback). Returns what the run logged: the last epoch's metrics, the test metrics and
    ``best/<monitor>``, the best checkpoint's monitored value.

    Every object is built before the MLflow run exists. The run is FINISHED only once
    everything is logged; any failure ends it FAILED (KILLED on Ctrl-C) with the error as a
    tag and the traceback as an artifact, then propagates. In a resumed sweep a complete
    earlier attempt is skipped (its metrics are returned) and an unfinished one continues in
    its own run from its newest checkpoint. A search trial that its pruner stops
    (``pipeline/search``) raises ``Pruned`` after fit; its run ends KILLED, tagged ``pruned``.
    """
    # Lightning and MLflow take seconds to import: only once the settings are known good.
    import lightning as L

    one_console()
    from pipeline.search.trial import pruned_epoch
    from pipeline.tracking import resume
    from pipeline.tracking.run import tracked_run

    previous = resume.previous_attempt(cfg)
    if resume.complete(previous):
        log.info("skipped: this config already finished in run %s", previous.info.run_id)
        return dict(previous.data.metrics)
    resume_from = resume.resume_checkpoint(previous) if resume.resumable(previous) else None
    L.seed_everything(cfg.seed, workers=True)
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
                           weights_only=False)
    return run.metrics()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the monitored metric for sweepers that optimise it (NaN
    for a job that failed: the sweep goes on). See ``pipeline.tracking.outcome``."""
    quiet()
    with JobOutcome(cfg) as job:
        job.metrics = train(cfg)
    return job.value


if __name__ == "__main__":
    main()  # a sweep with failed jobs exits 1 (its callback: tracking/sweep_callback.py)

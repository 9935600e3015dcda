"""A search trial as its job sees it: which Optuna trial it is, reporting, pruning.

The sweeper (``sweeper.py``) writes ``optuna_trials/<job num>.json`` in the sweep folder
before it launches the job: the study's storage and name, the trial's id and number, the
pruner. :class:`ReportToTrial`, a Lightning callback (``conf/hparams_search/optuna.yaml``),
reports the monitored validation metric to that trial after every epoch and, when the
pruner says so, stops the training; the job then ends its run KILLED with the tag
``pruned`` (its curve kept), skips the test and the remaining replicates, and the sweeper
tells the study that the trial was pruned. Outside an Optuna sweep the callback does
nothing. Of a trial's replicates (``seeds=N``) only the first reports, and can prune it.
"""

from __future__ import annotations

import logging
import math

import optuna
from lightning.pytorch.callbacks import Callback
from optuna.storages import RDBStorage

from pipeline.search import PRUNED_ATTR, REPORTER_ATTR, TrialInfo, trial_info
from pipeline.search.sweeper import make_pruner, open_storage

log = logging.getLogger(__name__)


def load_trial(info: TrialInfo) -> tuple[optuna.Trial, RDBStorage]:
    """The ``optuna.Trial`` of ``info``, on a study that has the sweep's pruner, and the
    study's storage, where the trial's attributes are read as other processes wrote them."""
    storage = open_storage(info.storage)
    study = optuna.load_study(
        study_name=info.study_name, storage=storage,
        pruner=make_pruner(info.pruner, info.pruner_args, info.max_epochs))
    # The sweeper asked for this trial in its own process: Trial(study, id) takes it up.
    return optuna.Trial(study, info.trial_id), storage


class ReportToTrial(Callback):
    """Report ``monitor`` to this job's trial after every validation; stop the training
    once the pruner prunes the trial. Under DDP rank 0 reports and decides, every rank
    stops."""

    def __init__(self, monitor: str, seed: int):
        self.monitor, self.seed = monitor, seed
        self.info = trial_info()  # here, in the job's process: spawned ranks get it pickled
        self.trial: optuna.Trial | None = None
        self.storage: RDBStorage | None = None
        self.reports = False

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit" or self.info is None or trainer.global_rank != 0:
            return
        self.trial, self.storage = load_trial(self.info)
        claimed = self.storage.get_trial(self.info.trial_id).user_attrs.get(REPORTER_ATTR)
        if claimed is None:
            self.trial.set_user_attr(REPORTER_ATTR, self.seed)
        self.reports = claimed in (None, self.seed)
        logger = trainer.logger
        if logger is not None and getattr(logger, "run_id", None):
            logger.experiment.set_tag(logger.run_id, "optuna_trial", str(self.info.number))
            self.trial.set_user_attr("mlflow_run_id", logger.run_id)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.info is None or trainer.sanity_checking:
            return
        prune = self._report(trainer) if trainer.global_rank == 0 else False
        if trainer.world_size > 1:
            prune = trainer.strategy.broadcast(prune, src=0)
        if prune:
            trainer.should_stop = True

    def _report(self, trainer) -> bool:
        value = trainer.callback_metrics.get(self.monitor)
        if not self.reports or value is None or not math.isfinite(float(value)):
            return False
        epoch = trainer.current_epoch
        self.trial.report(float(value), step=epoch)
        last = trainer.max_epochs is not None and 0 <= trainer.max_epochs <= epoch + 1
        if last or not self.trial.should_prune():
            return False
        self.trial.set_user_attr(PRUNED_ATTR, epoch + 1)
        log.info("trial %d pruned after epoch %d (%s %.4f)", self.trial.number, epoch + 1,
                 self.monitor, float(value))
        return True


def pruned_epoch(trainer) -> int | None:
    """The epoch after which the trial of this trainer's run was pruned, or None (asked of
    the study: under ddp_spawn the ranks decided it in their own processes)."""
    for callback in trainer.callbacks:
        if isinstance(callback, ReportToTrial) and callback.info is not None:
            storage = open_storage(callback.info.storage)
            return storage.get_trial(callback.info.trial_id).user_attrs.get(PRUNED_ATTR)
    return None

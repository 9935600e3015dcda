"""How a training shows its progress: Lightning's rich progress bar on stderr in a terminal,
else one line per epoch in the log (the console of a single run, the job's log file in a
sweep, whose own display reports each replicate)."""

from __future__ import annotations

import logging
import time

import lightning as L
from lightning.pytorch.callbacks import Callback, RichProgressBar

log = logging.getLogger(__name__)


class EpochLines(Callback):
    """``epoch 3/10: train/loss 0.412, val/seq_acc 0.882 (12 s)`` after each validation."""

    def __init__(self):
        self.started: float | None = None  # this epoch's start (none yet after a resume)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.time()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        shown = [f"{k} {float(metrics[k]):.3f}" for k in ("train/loss", "val/loss", "val/seq_acc")
                 if k in metrics]
        took = f" ({time.time() - self.started:.0f} s)" if self.started is not None else ""
        log.info("epoch %d/%s: %s%s", trainer.current_epoch + 1, trainer.max_epochs,
                 ", ".join(shown), took)


def progress_callbacks(bar: bool) -> list[Callback]:
    """The rich bar (on stderr, results stay alone on stdout) or the epoch lines."""
    return [RichProgressBar(console_kwargs={"stderr": True})] if bar else [EpochLines()]

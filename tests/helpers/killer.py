"""A test-only callback: SIGKILL this process at one stage of a run, the first time only
(a marker file remembers), as a lost node or an OOM killer would."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from lightning.pytorch.callbacks import Callback

STAGES = ("training", "after_fit", "test", "upload")


class KillAt(Callback):
    """``stage``: ``training`` (as epoch ``epoch`` starts, its predecessor checkpointed),
    ``after_fit`` (fit done, test not started), ``test`` (after the first test batch) or
    ``upload`` (the model's files logged, its URI and the report not yet); with
    ``only_seed``, only in the replicate whose ``seed`` it is."""

    def __init__(self, stage: str, marker_dir: str, epoch: int = 1, seed: int | None = None,
                 only_seed: int | None = None):
        assert stage in STAGES, stage
        self.stage, self.epoch = stage, epoch
        self.marker = Path(marker_dir) / f"{stage}.killed"
        self.armed = only_seed is None or seed == only_seed  # one replicate of several

    def _kill(self, stage: str) -> None:
        if stage == self.stage and self.armed and not self.marker.exists():
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            self.marker.write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.stage != "upload":
            return
        import mlflow.pyfunc
        import mlflow.pytorch

        for flavour in (mlflow.pyfunc, mlflow.pytorch):  # token models, vector models
            flavour.log_model = self._dying_after(flavour.log_model)

    def _dying_after(self, log_model):
        def log_then_die(*args, **kwargs):
            info = log_model(*args, **kwargs)
            self._kill("upload")
            return info

        return log_then_die

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == 0:
            self._kill("training")

    def on_fit_end(self, trainer, pl_module) -> None:
        self._kill("after_fit")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        self._kill("test")

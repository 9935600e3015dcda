"""A Lightning callback for the DDP tests: every rank writes what it trained and measured."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L


class RankRecorder(L.Callback):
    """Writes ``<folder>/job<job>-rank<rank>-<fit|test>.json``: the world size, the module's
    hyperparameters, the batches this rank saw and its metrics at the end of the stage
    (``ddp_spawn`` starts the ranks anew for fit and for test)."""

    def __init__(self, folder: str, job: str):
        self.path = Path(folder)
        self.job = job
        self.record: dict = {"train_batches": 0, "train_rows": []}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.record.update(world_size=trainer.world_size, rank=trainer.global_rank,
                           hparams=json.loads(json.dumps(dict(pl_module.hparams), default=str)))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.record["train_batches"] += 1
        if trainer.current_epoch == 0:
            self.record["train_rows"] += batch.index.tolist()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, "fit")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, "test")

    def _write(self, trainer: L.Trainer, stage: str) -> None:
        self.record["metrics"] = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self.path.mkdir(parents=True, exist_ok=True)
        out = self.path / f"job{self.job}-rank{trainer.global_rank}-{stage}.json"
        out.write_text(json.dumps(self.record))

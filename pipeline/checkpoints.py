"""Checkpoints written whole in their own folder, and read back only once they load.

Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction whose temporary file
lies in the system's temporary folder; the final move onto the run folder's file system is
then a copy, which a full disk or a kill cuts short, leaving a truncated checkpoint.
:class:`AtomicCheckpointIO` (given to every Trainer by ``pipeline.build``) serialises the
checkpoint in memory and writes it with :func:`pipeline.files.atomic_write`: a temporary
file beside the target, fsynced, renamed. :class:`OnExceptionCheckpoint` does not try to
save once the disk is full, and a save it cannot make never hides the error that stopped
the training. :func:`newest_loadable` picks the checkpoint a resumed run continues from,
setting damaged ones aside.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import OnExceptionCheckpoint as _OnExceptionCheckpoint

from pipeline.errors import DiskFull
from pipeline.files import set_aside, why_damaged, write_bytes

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local writes are atomic in the target's own folder; a full
    disk raises :class:`pipeline.files.DiskFull` naming the checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None or "://" in str(path):  # remote: fsspec's way
            return super().save_checkpoint(checkpoint, path, storage_options)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_bytes(path, buffer.getbuffer())


class OnExceptionCheckpoint(_OnExceptionCheckpoint):
    """Lightning's ``OnExceptionCheckpoint`` (``interrupted.ckpt`` on Ctrl-C, SIGTERM or a
    crash), which skips the save when the disk is full (the newest ``last.ckpt`` stays) and
    logs, rather than raises, a save that fails: the error that stopped training is the one
    reported. With several ranks, rank 0 writes it and no rank then waits for the others
    (``Trainer.save_checkpoint`` would: a peer that died never arrives, and the wait would
    last the strategy's whole timeout, then raise)."""

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if DiskFull.of(exception):
            log.warning("the disk is full: %s not written; a resumed run continues from the "
                        "newest checkpoint that loads", self.ckpt_path)
            return
        try:
            if trainer.world_size == 1:
                super().on_exception(trainer, pl_module, exception)
            else:  # what Trainer.save_checkpoint does, without its closing barrier
                checkpoint = trainer._checkpoint_connector.dump_checkpoint()
                trainer.strategy.save_checkpoint(checkpoint, self.ckpt_path)  # rank 0 writes
        except Exception as err:
            log.warning("%s not written (%s: %s); a resumed run continues from the newest "
                        "checkpoint that loads", self.ckpt_path, type(err).__name__, err)


def check_checkpoint(path: str | Path) -> None:
    """Raise if ``path`` is not a whole Lightning checkpoint (loads, holds a state dict)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError("not a Lightning checkpoint (no state_dict)")


def newest_loadable(paths: Iterable[Path]) -> Path | None:
    """The newest of ``paths`` that exists and loads; each newer one that does not load is
    set aside (``<name>.damaged``) with one line."""
    found = sorted((p for p in paths if p.is_file()), key=lambda p: p.stat().st_mtime,
                   reverse=True)
    for path in found:
        try:
            check_checkpoint(path)
            return path
        except MemoryError:
            raise
        except Exception as err:
            set_aside(path, "checkpoint", why_damaged(err),
                      "trying an older one" if path != found[-1] else "none left to resume from")
    return None

"""Test-only: a small real file system to fill (tmpfs), and a callback that fills it."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

from lightning.pytorch.callbacks import Callback

FILLER = "filler.bin"


def mount_small_disk(folder: Path, size: str = "64m") -> str | None:
    """Mount a tmpfs of ``size`` on ``folder``; None when done, else why it cannot be."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(folder)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"cannot run mount: {err}"
    if done.returncode:
        return f"mounting a tmpfs is not allowed here: {(done.stderr or done.stdout).strip()}"
    return None


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def fill(folder: Path) -> Path:
    """Write ``folder/filler.bin`` until the file system has no byte left."""
    path = Path(folder) / FILLER
    chunk = b"\0" * 2**16
    with open(path, "ab", buffering=0) as file:
        with contextlib.suppress(OSError):
            while True:
                file.write(chunk)
        for size in (4096, 512, 1):  # the last partial blocks
            with contextlib.suppress(OSError):
                while True:
                    file.write(b"\0" * size)
    return path


class FillDiskAt(Callback):
    """Fill the file system of ``folder`` as epoch ``epoch`` starts (its predecessor
    checkpointed), the first time only (a marker in ``marker_dir``, on another disk)."""

    def __init__(self, folder: str, marker_dir: str, epoch: int = 1):
        self.folder, self.epoch = Path(folder), epoch
        self.marker = Path(marker_dir) / "disk.filled"

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch and not self.marker.exists():
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            self.marker.write_text("filled")
            fill(self.folder)

"""Quiet, informative output: the library messages this project causes upstream or cannot
act on, filtered narrowly by their text, so what a run prints is the project's own lines.

Each entry says why it is filtered rather than fixed:

- Lightning resumes from ``ckpt_path="last"`` by itself whenever an ``OnExceptionCheckpoint``
  is present and warns twice about it on every fresh run (a resumed run passes its path).
- Lightning's own ``_pytree`` helper uses a deprecated torch API.
- Lightning advertises ``litlogger`` on every Trainer.
- MLflow warns that pickled models run code when loaded: the project logs pickles on purpose
  (``generate`` and the search need the Python class) and its README says so.
- MLflow draws artifact-download progress bars, one per model saved or loaded.
- MLflow's SQL store logs a database error's whole traceback before raising it: on a full
  disk the job reports it in one line instead.

And ``import lightning`` gives the ``lightning`` logger a console handler of its own while
its records still reach the root's (Hydra's): :func:`one_console` drops the extra one, which
printed every Lightning line twice.
"""

from __future__ import annotations

import logging
import os
import warnings

WARNINGS = (
    r"`\.(fit|validate|test)\(ckpt_path=None\)` was called without a model",
    r'\.(fit|validate|test)\(ckpt_path="last"\) is set, but there is no last checkpoint',
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)
LOG_LINES = (
    ("lightning.pytorch.utilities.rank_zero", "💡 Tip: For seamless cloud logging"),
    ("pytorch_lightning.utilities.rank_zero", "💡 Tip: For seamless cloud logging"),
    ("mlflow.pytorch", "Saving pytorch model by Pickle or CloudPickle format"),
)


class _DropDiskFull(logging.Filter):
    """MLflow's SQL store logs every database error with its whole traceback before raising
    it; a full disk is then reported once, in one line, by the job."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pipeline.files import disk_full

        return not (record.exc_info and disk_full(record.exc_info[1]))


class _Drop(logging.Filter):
    def __init__(self, start: str):
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.start)


def quiet() -> None:
    """Install the filters (idempotent); call before the libraries log."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for message in WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    store = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _DropDiskFull) for f in store.filters):
        store.addFilter(_DropDiskFull())
    for name, start in LOG_LINES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Drop) and f.start == start for f in logger.filters):
            logger.addFilter(_Drop(start))


def one_console() -> None:
    """Once ``lightning`` is imported: where the root logger has a handler, Lightning's own
    console handler only repeats each line; remove it."""
    if logging.getLogger().handlers:
        logging.getLogger("lightning").handlers.clear()


class JobLogFile(logging.FileHandler):
    """The job's log file (Hydra's ``job_logging``): where a line cannot be written because
    the disk is full, one line on stderr says so, once, instead of logging's traceback for
    every record; the console keeps every line."""

    warned = False

    def handleError(self, record: logging.LogRecord) -> None:
        import sys

        from pipeline.files import DiskFull, disk_full

        err = sys.exc_info()[1]
        if not disk_full(err):
            return super().handleError(record)
        if not JobLogFile.warned:
            JobLogFile.warned = True
            sys.stderr.write(f"{DiskFull(self.baseFilename, err)} (the job's log file; its "
                             "lines go on on the console)\n")

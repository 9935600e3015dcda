"""Where each line goes: the project's own lines and every error on the console (stderr),
every library line in the job's log file (``conf/hydra/job_logging/project.yaml``);
``SEQ2SEQ_VERBOSE=1`` (``make ... VERBOSE=1``) or ``hydra.verbose=true`` shows them all.

For that, MLflow's loggers propagate to the root like every other library's
(``MLFLOW_CONFIGURE_LOGGING=false``, or its handler removed where MLflow was imported first),
Python warnings are logged (``py.warnings``), and ``import lightning``'s own console handler
is dropped (:func:`one_console`; its records reach the root's too).

A few library messages are dropped even from the log file, narrowly by their text; each
says why it is filtered rather than fixed:

- Lightning resumes from ``ckpt_path="last"`` by itself whenever an ``OnExceptionCheckpoint``
  is present and warns twice about it on every fresh run (a resumed run passes its path).
- Lightning's own ``_pytree`` helper uses a deprecated torch API.
- Lightning advertises ``litlogger`` and ``litmodels`` on every Trainer.
- MLflow warns that pickled models run code when loaded: the project logs its vector
  models' PyTorch pickles on purpose (``generate`` needs the Python class).
- MLflow draws artifact-download progress bars, one per model saved or loaded.
- MLflow's SQL store logs a database error's whole traceback before raising it: on a full
  disk the job reports it in one line instead.
- A new MLflow store's schema migration logs some 80 lines.

MLflow also prints each run's and its experiment's link on stdout when a run on a tracking
server ends (``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT`` turns that off): the project's own
lines give the links, opening the UI in its model-training mode.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

from pipeline.errors import DiskFull

WARNINGS = (
    r"`\.(fit|validate|test)\(ckpt_path=None\)` was called without a model",
    r'\.(fit|validate|test)\(ckpt_path="last"\) is set, but there is no last checkpoint',
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)
LOG_LINES = (
    ("lightning.pytorch.utilities.rank_zero", "💡 Tip: For seamless cloud"),
    ("pytorch_lightning.utilities.rank_zero", "💡 Tip: For seamless cloud"),
    ("mlflow.pytorch", "Saving pytorch model by Pickle or CloudPickle format"),
)


# The loggers whose lines are the project's own.
PROJECT = ("pipeline", "hydra_plugins.seq2seq")


def verbose() -> bool:
    """Library lines on the console too: ``SEQ2SEQ_VERBOSE=1`` or a DEBUG root logger
    (``hydra.verbose=true``)."""
    return os.environ.get("SEQ2SEQ_VERBOSE", "") not in ("", "0") \
        or logging.getLogger().getEffectiveLevel() <= logging.DEBUG


class ConsoleFilter(logging.Filter):
    """The console's lines: the project's own and every library error. A record logged with
    ``extra={"console": False}`` goes to the log file only; in a sweep's job
    (:func:`job_in_sweep`) the project's INFO lines go there too, since the sweep's own
    display reports each replicate (its warnings and errors still show)."""

    quiet_below = logging.NOTSET

    def filter(self, record: logging.LogRecord) -> bool:
        if verbose():
            return True
        shown = getattr(record, "console", None)
        if shown is not None:
            return bool(shown)
        if record.levelno >= logging.ERROR:
            return True
        own = record.name.startswith(PROJECT)
        return own and record.levelno >= ConsoleFilter.quiet_below


def job_in_sweep() -> None:
    """This process runs a sweep's job: only the project's warnings and every error reach
    the console."""
    ConsoleFilter.quiet_below = logging.WARNING


class ConsoleFormatter(logging.Formatter):
    """The message alone; warnings and errors say which they are."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.ERROR:
            return f"error: {message}"
        if record.levelno >= logging.WARNING:
            return f"warning: {message}"
        return message


class _DropDiskFull(logging.Filter):
    """MLflow's SQL store logs every database error with its whole traceback before raising
    it; a full disk is then reported once, in one line, by the job."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and DiskFull.of(record.exc_info[1]))


class _Drop(logging.Filter):
    def __init__(self, start: str):
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.start)


def quiet() -> None:
    """Install the filters (idempotent); call before the libraries log."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    if "mlflow" in sys.modules:  # imported first: its own console handler goes
        mlflow_logger = logging.getLogger("mlflow")
        mlflow_logger.handlers.clear()
        mlflow_logger.propagate = True
    logging.captureWarnings(True)
    logging.getLogger("alembic").setLevel(logging.WARNING)
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
        err = sys.exc_info()[1]
        if not DiskFull.of(err):
            return super().handleError(record)
        if not JobLogFile.warned:
            JobLogFile.warned = True
            sys.stderr.write(f"{DiskFull(self.baseFilename, err)} (the job's log file; its "
                             "lines go on on the console)\n")

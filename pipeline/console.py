"""What a person sees: the project's own lines and every error on stderr, library lines in
the job's log file (``conf/hydra/job_logging/project.yaml``).

``SEQ2SEQ_VERBOSE=1`` (``make ... VERBOSE=1``) or ``hydra.verbose=true`` puts every library
line back on the console.
"""

from __future__ import annotations

import logging
import os

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
    (:func:`job_in_sweep`) the project's lines below ERROR go there too, since the sweep's
    own display reports each replicate."""

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
    """This process runs a sweep's job: only errors reach the console."""
    ConsoleFilter.quiet_below = logging.ERROR


class ConsoleFormatter(logging.Formatter):
    """The message alone; warnings and errors say which they are."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.ERROR:
            return f"error: {message}"
        if record.levelno >= logging.WARNING:
            return f"warning: {message}"
        return message

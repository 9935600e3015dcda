"""Every exception the project raises, each declared here once. Those that end a job in
one line carry their exit status (:data:`ONE_LINE`): a setting that cannot work or a data
file that cannot be read as asked (2), a tracking store that cannot be used (2), a tracking
server that went away (3), a full disk (4), a lost process of a multi-process training (5).
Imports nothing of the package."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting that cannot work: names the key, the bad value and what is allowed.

    ``key`` and ``value`` may be tuples, for settings that are wrong only together."""

    def __init__(self, key: str | tuple[str, ...], value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        if isinstance(key, tuple):
            shown = " ".join(f"{k}={v!r}" for k, v in zip(key, value, strict=True))
            super().__init__(f"{shown} is invalid together: {allowed}")
        else:
            super().__init__(f"{key}={value!r} is invalid: {allowed}")


class DataFileError(ConfigError):
    """A data file named by setting ``key`` that cannot be used: names the file, the line
    (1-based, where there is one) and what was expected there."""

    def __init__(self, key: str, path: str | Path, problem: str, line: int | None = None):
        self.key, self.value, self.allowed, self.line = key, str(path), problem, line
        where = f"{path}, line {line}" if line else str(path)
        ValueError.__init__(self, f"{key}: {where}: {problem}")


FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# How libraries that drop the errno say it (SQLite through SQLAlchemy, MLflow's server).
FULL_WORDS = ("no space left on device", "disk quota exceeded", "database or disk is full")


def causes(err: BaseException | None):
    """``err`` and the errors it was raised from or during, outermost first."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


class DiskFull(RuntimeError):
    """A write failed because the disk (or a quota) is full; ``where`` is what it wrote.

    :meth:`of` is the one rule for what counts as a full disk and how it is named."""

    def __init__(self, where: str | os.PathLike, cause: BaseException | None = None):
        self.where = str(where)
        reason = os.strerror(errno.ENOSPC)
        for err in causes(cause):
            if isinstance(err, OSError) and err.errno in FULL_ERRNOS:
                reason = os.strerror(err.errno)
                break
        super().__init__(f"the disk is full ({reason}): could not write {self.where}")

    @classmethod
    def of(cls, err: BaseException | None, where: str | os.PathLike | None = None,
           store: str | None = None) -> DiskFull | None:
        """None unless ``err`` (or an error it was raised from) says the disk or a quota is
        full (``ENOSPC``, ``EDQUOT``, SQLite's "database or disk is full"); else the
        :class:`DiskFull` naming where: the one in the chain, the file the error names, the
        tracking ``store`` for a database error, else ``where``."""
        chain = list(causes(err))
        said = [str(e).lower() for e in chain]
        for e in chain:
            if isinstance(e, DiskFull):
                return e
        if not any(isinstance(e, OSError) and e.errno in FULL_ERRNOS for e in chain) \
                and not any(words in text for text in said for words in FULL_WORDS):
            return None
        if store and any("database or disk is full" in text for text in said):
            return cls(f"the tracking store {store}", err)
        named = next((e.filename for e in chain if isinstance(e, OSError) and e.filename), None)
        return cls(named or where or "a file", err)


class DamagedFile(ValueError):
    """A file read back is not what was written (truncated, garbage, wrong digest)."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path} is damaged ({reason})")


class InputError(ValueError):
    """An input a model cannot decode: none at all, an empty one, or (``unknown="error"``)
    one with symbols outside its vocabulary. Says which (``index``, 0-based, of ``total``)
    and what would be right; ``problem`` says it of the input alone."""

    def __init__(self, problem: str, index: int | None = None, total: int | None = None):
        self.problem, self.index, self.total = problem, index, total
        super().__init__(problem if index is None else f"input {index + 1} of {total} {problem}")


class StoreError(RuntimeError):
    """The tracking store cannot be used as it is; the message says why and how to mend it."""


class TrackingServerGone(RuntimeError):
    """The tracking server stopped answering mid-run, after MLflow's own retries."""

    def __init__(self, tracking_uri: str, cause: BaseException, checkpoints: str):
        super().__init__(
            f"the MLflow tracking server {tracking_uri} stopped answering "
            f"({type(cause).__name__} after MLflow's retries): training stopped; its "
            f"checkpoints are in {checkpoints}; the MLflow run stays RUNNING"
        )


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss at global step ``step``."""

    def __init__(self, loss: float, epoch: int, step: int):
        super().__init__(f"loss is {loss} at epoch {epoch}, step {step}: training stopped")
        self.step = step


class Pruned(Exception):  # noqa: N818 - a verdict, not an error
    """The trial's pruner stopped this training: the run ends KILLED, tagged ``pruned``
    with the epoch, and the job's other replicates do not run."""

    def __init__(self, epoch: int):
        super().__init__(f"pruned after epoch {epoch}")
        self.epoch = epoch


class RankLost(RuntimeError):
    """Another process of a multi-process training stopped answering: killed, or its host
    lost or unreachable for longer than the strategy's ``timeout``."""

    def __init__(self, cause: BaseException, world_size: int, run_dir: str, checkpoints: str):
        first = next((line.strip() for line in str(cause).splitlines() if line.strip()), "")
        said = re.sub(r"^\[[^\]]*\]\s*", "", first).split(". ")[0][:160]  # gloo's source file
        super().__init__(
            f"another of this training's {world_size} processes stopped answering "
            f"({said or type(cause).__name__}): training stopped; run the same command on "
            f"every host, with hydra.run.dir={run_dir}, to continue from the newest "
            f"checkpoint in {checkpoints}")


# The errors that end a job in one line, with the command's exit status; a sweep's job stops
# its remaining replicates on them (the next would meet the same).
ONE_LINE = {ConfigError: 2, StoreError: 2, TrackingServerGone: 3, DiskFull: 4, RankLost: 5}
FATAL = tuple(ONE_LINE)

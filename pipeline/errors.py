"""The errors that end a command in one line (exit status 2): a setting that cannot work,
or an input file that cannot be read as asked. Imports nothing of the package."""

from __future__ import annotations

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

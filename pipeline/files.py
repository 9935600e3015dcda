"""Files the pipeline writes and reads back: written whole or not at all, read back verified.

Every such file is written by :func:`atomic_write` (or :func:`write_bytes`,
:func:`write_text`, :func:`write_json`, :func:`write_sealed`): into a temporary file beside
the target (``.<name>.<pid>.tmp``, the same file system, so the rename is atomic), flushed
and fsynced, then renamed over the target. A write cut short (a full disk, a kill) leaves
the previous file or none, never a truncated one, and no temporary file when it could
still clean up.

A file read back is checked before use (:func:`load_or_rebuild`, :func:`read_json`,
:func:`read_sealed`); a damaged one is set aside (:func:`set_aside`: renamed
``<name>.damaged``, never deleted) with one log line naming it and saying what happens
instead.

A write that meets a full disk or quota raises :class:`pipeline.errors.DiskFull` naming the
file; the job's outcome reports it in one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from pipeline.errors import DamagedFile, DiskFull

log = logging.getLogger(__name__)
T = TypeVar("T")
SEALED_MAGIC = b"seq2seq-sealed 1\n"


def atomic_write(path: str | os.PathLike, write: Callable[[IO], Any], mode: str = "wb") -> Path:
    """Write ``path`` whole or not at all: ``write(file)`` fills a temporary file beside it,
    which is flushed, fsynced and renamed over ``path``. A full disk raises
    :class:`DiskFull` naming ``path``; the temporary file is removed on any failure."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, mode) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if DiskFull.of(err):
            raise DiskFull(path, err) from err
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a power cut
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return path


def write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text), mode="w")


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj))


def write_sealed(path: str | os.PathLike, payload: bytes | memoryview) -> Path:
    """Write ``payload`` after a header recording its length and SHA-256, which
    :func:`read_sealed` checks."""
    digest = hashlib.sha256(payload).hexdigest()
    header = SEALED_MAGIC + f"{digest} {len(payload)}\n".encode()
    return atomic_write(path, lambda f: (f.write(header), f.write(payload)))


def read_sealed(path: str | os.PathLike) -> bytes:
    """The payload :func:`write_sealed` wrote, or :class:`DamagedFile` if the file is not
    whole (its length or digest differs from the recorded ones)."""
    blob = Path(path).read_bytes()
    if not blob.startswith(SEALED_MAGIC):
        raise DamagedFile(path, "no sealed-file header")
    line, newline, payload = blob[len(SEALED_MAGIC):].partition(b"\n")
    try:
        digest, size = line.decode("ascii").split()
        size = int(size)
    except ValueError:
        raise DamagedFile(path, "unreadable header") from None
    if not newline or len(payload) != size:
        raise DamagedFile(path, f"{len(payload)} of {size} bytes")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise DamagedFile(path, "digest does not match")
    return payload


def set_aside(path: str | os.PathLike, what: str, reason: str, instead: str) -> Path | None:
    """Rename a damaged ``path`` to ``<name>.damaged`` (``.damaged-1``, ... if taken) and
    log one line: ``<what> <path> is damaged (<reason>): set aside as <name>; <instead>``.
    Returns the new path (None if the file was gone already, e.g. another process set it
    aside first)."""
    path = Path(path)
    aside = path.with_name(f"{path.name}.damaged")
    n = 0
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{n}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return None
    log.warning("%s %s is damaged (%s): set aside as %s; %s", what, path, reason,
                aside.name, instead)
    return aside


def why_damaged(err: BaseException) -> str:
    """A short reason for a failed load: the error's first line."""
    if isinstance(err, DamagedFile):
        return err.reason
    words = str(err).strip().splitlines()
    return f"{type(err).__name__}: {words[0][:200]}" if words else type(err).__name__


def load_or_rebuild(path: str | os.PathLike, load: Callable[[Path], T],
                    rebuild: Callable[[], T], what: str) -> T:
    """``load(path)`` when the file is there and loads; otherwise ``rebuild()`` (which writes
    the file again, e.g. with :func:`write_sealed`). A file that does not load is set aside
    with one line ("<what> <path> is damaged (...): set aside as ...; rebuilt")."""
    path = Path(path)
    if path.exists():
        try:
            return load(path)
        except MemoryError:
            raise
        except Exception as err:
            set_aside(path, what, why_damaged(err), "rebuilt")
    return rebuild()


def read_json(path: str | os.PathLike, what: str, instead: str = "ignored") -> Any | None:
    """The JSON in ``path``, or None when it is missing or damaged (then set aside, with one
    line saying ``instead``)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as err:
        set_aside(path, what, why_damaged(err), instead)
        return None

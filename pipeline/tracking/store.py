"""Opening the tracking store: first use under an inter-process lock, health checks.

MLflow creates and migrates an SQLite store on first use, and its migration is not safe
against a second process doing the same: two commands started at once on a fresh store can
leave it half-migrated for good. :func:`open_store` runs that first use under a file lock
beside the database (``filelock``), so every entry point that opens the store (training,
the sweep callback, predict, ``make ui`` through ``python -m pipeline.tracking.store``)
finds it either absent or complete. A store an older run left half-migrated is recreated
when it holds no runs, otherwise refused in one line saying how to mend it.
``python -m pipeline.tracking.store URI --ui URL`` opens (creates) a store and prints where
each experiment's runs table is in the UI.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
import urllib.request
from pathlib import Path

from filelock import FileLock

from pipeline.errors import ConfigError, StoreError

log = logging.getLogger(__name__)
LOCK_TIMEOUT_S = 600


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for other stores."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def open_store(uri: str) -> None:
    """Make sure the store at ``uri`` exists and is fully migrated, safely across processes
    (a server's database is the server's business)."""
    path = sqlite_path(uri)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock", timeout=LOCK_TIMEOUT_S):
        problem = half_migrated(path)
        if problem and holds_runs(path):
            raise StoreError(
                f"the MLflow store {path} was left half-migrated ({problem}), probably by an "
                "interrupted first use: back it up, drop its _alembic_tmp_* tables and run "
                f"`mlflow db upgrade sqlite:///{path}`, or move it away to start a new one")
        if problem:
            log.warning("the MLflow store %s was left half-migrated (%s) and holds no runs: "
                        "made anew", path, problem)
            path.unlink()
        # MLflow takes seconds to import: only where a store is used.
        from mlflow import MlflowClient  # noqa: PLC0415

        MlflowClient(uri).search_experiments(max_results=1)  # creates and migrates


# MLflow 3 opens a new experiment on its GenAI overview unless told what kind it is.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def ensure_experiment(uri: str, name: str, artifact_location: str | None) -> str:
    """The experiment's id, creating it (a model-training experiment, so the UI opens on
    its runs table) or restoring it if it was deleted."""
    from mlflow import MlflowClient  # noqa: PLC0415 - MLflow: seconds, only where a store is used

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=artifact_location,
                                        tags=EXPERIMENT_KIND)
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    for key, value in EXPERIMENT_KIND.items():
        if experiment.tags.get(key) != value:
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def _tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("select name from sqlite_master where type='table'")}


def half_migrated(path: Path) -> str | None:
    """What an interrupted schema migration left in the database at ``path``, or None for
    a complete store (or no file yet)."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    # MLflow's SQL store, imported only for SQLite.
    from mlflow.store.db.utils import _get_latest_schema_revision  # noqa: PLC0415

    with sqlite3.connect(path) as db:
        tables = _tables(db)
        if not tables:
            return None
        tmp = sorted(t for t in tables if t.startswith("_alembic_tmp_"))
        if tmp:
            return f"table {tmp[0]}"
        versions = ([r[0] for r in db.execute("select version_num from alembic_version")]
                    if "alembic_version" in tables else [])
    if len(versions) != 1:
        return f"{len(versions)} schema versions recorded"
    if versions[0] != _get_latest_schema_revision():
        return f"schema version {versions[0]}, not {_get_latest_schema_revision()}"
    return None


def holds_runs(path: Path) -> bool:
    """True when the database has a run or a registered model worth keeping."""
    with sqlite3.connect(path) as db:
        tables = _tables(db)
        return any(db.execute(f"select 1 from {t} limit 1").fetchone() is not None
                   for t in ("runs", "registered_models") if t in tables)


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """Raise a ``ConfigError`` naming ``logger.tracking_uri`` when the store cannot be used:
    a folder that cannot be written, a server that does not answer its health check."""
    path = sqlite_path(uri)
    if path is not None:
        folder = path.parent
        while not folder.exists():
            folder = folder.parent
        if not (folder.is_dir() and os.access(folder, os.W_OK)):
            raise ConfigError("logger.tracking_uri", uri, f"a store in a writable folder "
                              f"({folder} is not a writable folder)")
    elif is_server(uri):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as reply:
                if reply.status == 200:
                    return
                shown = f"{uri} (status {reply.status})"
        except (OSError, ValueError) as err:
            shown = f"{uri} ({err})"
        raise ConfigError("logger.tracking_uri", shown,
                          "a running MLflow server (start one with `make server`), or the "
                          "default embedded store (drop the override)")


def server_gone(uri: str) -> bool:
    """True for a tracking server (http, https) that no longer answers its health check."""
    if not is_server(uri):
        return False
    try:
        check_tracking_uri(uri)
    except ConfigError:
        return True
    return False


# MLflow 3's UI shows an experiment and its runs in one of two modes, GenAI or model
# training: the page address's ``workflowType`` when it has one, else the switch at the top of
# its sidebar (kept in the browser), GenAI until that is used; the experiment's kind tag does
# not count. Its own links to a run drop the address's mode, so every address printed here
# carries it.
MODEL_TRAINING = "workflowType=machine_learning"


def ui_base(tracking_uri: str, default: str = "http://127.0.0.1:5000") -> str:
    """Where a store's runs are browsed: a tracking server is its own UI; a local store's
    UI is the one ``make ui`` serves (``default``)."""
    return tracking_uri.rstrip("/") if is_server(tracking_uri) else default


def experiment_link(ui: str, experiment_id: str) -> str:
    """An experiment's runs table in the UI, in its model-training mode."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}?{MODEL_TRAINING}"


def run_link(ui: str, experiment_id: str, run_id: str) -> str:
    """A run's page in the UI, in its model-training mode."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{MODEL_TRAINING}"


def run_where(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """``<run id>  <its page>``, and ``(make ui)`` where a local store needs the UI started."""
    link = run_link(ui_base(tracking_uri), experiment_id, run_id)
    return f"{run_id}  {link}" + ("" if is_server(tracking_uri) else "  (make ui)")


def experiment_links(uri: str, ui: str) -> list[str]:
    """``name: <experiment_link>`` per experiment of the store at ``uri``."""
    from mlflow import MlflowClient  # noqa: PLC0415 - MLflow: seconds, only where a store is used

    return [f"{e.name}: {experiment_link(ui, e.experiment_id)}"
            for e in MlflowClient(uri).search_experiments() if e.name != "Default"]


def main(argv: list[str] | None = None) -> None:
    """``python -m pipeline.tracking.store URI [--ui URL]``: open (create) the store; with
    ``--ui``, print where each experiment's runs are in that UI."""

    parser = argparse.ArgumentParser(prog="python -m pipeline.tracking.store")
    parser.add_argument("uri")
    parser.add_argument("--ui", help="the UI's address, to print each experiment's link")
    args = parser.parse_args(argv)
    try:
        open_store(args.uri)
    except StoreError as err:
        sys.exit(f"error: {err}")
    if args.ui:
        print("\n".join(["Training runs in the MLflow UI:", *experiment_links(args.uri, args.ui)]))


if __name__ == "__main__":
    main()

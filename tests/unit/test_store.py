"""Opening the store: a half-migrated store is made anew when it holds no runs, refused in
one line when it does; a complete store is left as it is."""

import sqlite3

import pytest
from mlflow import MlflowClient

from pipeline.tracking.store import StoreError, half_migrated, open_store


def break_migration(path):
    """What an interrupted batch migration leaves: a temporary copy of a table."""
    with sqlite3.connect(path) as db:
        db.execute("create table _alembic_tmp_tags (key varchar(250))")


def test_a_fresh_store_is_created_complete(tmp_path):
    uri = f"sqlite:///{tmp_path}/outputs/mlflow.db"
    open_store(uri)
    assert half_migrated(tmp_path / "outputs" / "mlflow.db") is None
    assert MlflowClient(uri).get_experiment("0").name == "Default"


def test_a_half_migrated_store_without_runs_is_made_anew(tmp_path):
    path = tmp_path / "mlflow.db"
    open_store(f"sqlite:///{path}")
    break_migration(path)
    assert half_migrated(path) == "table _alembic_tmp_tags"
    open_store(f"sqlite:///{path}")
    assert half_migrated(path) is None


def test_a_half_migrated_store_with_runs_is_refused_in_one_line(tmp_path):
    path = tmp_path / "mlflow.db"
    uri = f"sqlite:///{path}"
    open_store(uri)
    MlflowClient(uri).create_run("0")
    break_migration(path)
    with pytest.raises(StoreError) as err:
        open_store(uri)
    message = str(err.value)
    assert "\n" not in message and "_alembic_tmp_tags" in message
    assert "mlflow db upgrade" in message
    assert path.exists()  # nothing was lost


def test_a_lost_schema_version_is_detected(tmp_path):
    path = tmp_path / "mlflow.db"
    open_store(f"sqlite:///{path}")
    with sqlite3.connect(path) as db:
        db.execute("delete from alembic_version")
    assert half_migrated(path) == "0 schema versions recorded"

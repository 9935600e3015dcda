"""Opening the store: a half-migrated store is made anew when it holds no runs, refused in
one line when it does; a complete store is left as it is."""

import shutil
import sqlite3

import pytest
from mlflow import MlflowClient

from pipeline.errors import StoreError
from pipeline.tracking.store import half_migrated, open_store


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """One complete store, made once (MLflow's migrations take seconds)."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    open_store(f"sqlite:///{path}")
    return path


@pytest.fixture
def path(tmp_path, template):
    """A copy of the complete store, this test's own."""
    return shutil.copy(template, tmp_path / "mlflow.db")


def break_migration(path):
    """What an interrupted batch migration leaves: a temporary copy of a table."""
    with sqlite3.connect(path) as db:
        db.execute("create table _alembic_tmp_tags (key varchar(250))")


@pytest.mark.slow  # MLflow's migrations take seconds
def test_a_fresh_store_is_created_complete(tmp_path):
    uri = f"sqlite:///{tmp_path}/outputs/mlflow.db"
    open_store(uri)
    assert half_migrated(tmp_path / "outputs" / "mlflow.db") is None
    assert MlflowClient(uri).get_experiment("0").name == "Default"


@pytest.mark.slow  # made anew: MLflow's migrations again
def test_a_half_migrated_store_without_runs_is_made_anew(path):
    break_migration(path)
    assert half_migrated(path) == "table _alembic_tmp_tags"
    open_store(f"sqlite:///{path}")
    assert half_migrated(path) is None


def test_a_half_migrated_store_with_runs_is_refused_in_one_line(path):
    uri = f"sqlite:///{path}"
    MlflowClient(uri).create_run("0")
    break_migration(path)
    with pytest.raises(StoreError) as err:
        open_store(uri)
    message = str(err.value)
    assert "\n" not in message and "_alembic_tmp_tags" in message
    assert "mlflow db upgrade" in message
    assert path.exists()  # nothing was lost


def test_a_lost_schema_version_is_detected(path):
    with sqlite3.connect(path) as db:
        db.execute("delete from alembic_version")
    assert half_migrated(path) == "0 schema versions recorded"

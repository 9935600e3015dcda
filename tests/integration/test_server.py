"""The shared tracking server (``python -m pipeline.tracking.server``): a throwaway
PostgreSQL cluster and ``mlflow server`` on it, a parallel sweep logging to it, the server
going away in the middle of a run, and a champion served through it with no shared disk."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from pipeline.tracking.server import OPTUNA_DB, LocalPostgres, pg_bin, stop_group, wait_healthy
from tests.helpers import ROOT, TINY, free_port, run_cli

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL is not installed (no initdb/pg_ctl;"
                       " `make system-deps` apt-installs Debian's postgresql package)"),
]


def start_server(folder: Path, port: int, *args: str) -> subprocess.Popen:
    """``python -m pipeline.tracking.server`` in ``folder``; returns once /health answers."""
    with (folder / f"server-{port}.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.tracking.server", "--dir", str(folder),
             "--port", str(port), "--workers", "1", *args],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
    if wait_healthy(f"http://127.0.0.1:{port}", proc):
        return proc
    stop_server(proc)
    pytest.fail(f"the server did not start:\n{(folder / f'server-{port}.log').read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM, as Ctrl-C: the module stops mlflow server, then its cluster."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server():
    """(URL, folder) of a server on a fresh cluster; everything is stopped and removed after."""
    # Not under pytest's tmp_path: as root the cluster runs as `postgres`, which must reach it.
    folder = Path(tempfile.mkdtemp(prefix="seq2seq-server-"))
    folder.chmod(0o755)
    port = free_port()
    proc = None
    try:
        proc = start_server(folder, port)
        yield f"http://127.0.0.1:{port}", folder
    finally:
        if proc is not None:
            stop_server(proc)
        LocalPostgres(folder / "postgres").stop()  # in case the module could not
        shutil.rmtree(folder, ignore_errors=True)


def test_parallel_sweep_logs_every_run_to_the_server(server, tmp_path):
    url, folder = server
    assert (folder / "postgres" / "PG_VERSION").exists()
    result = run_cli("-m", *TINY, "model.depth=1,2", "hydra/launcher=joblib",
                     "hydra.launcher.n_jobs=2", f"logger.tracking_uri={url}", output_dir=tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()

    client = MlflowClient(url)
    experiment = client.get_experiment_by_name("seq2seq-reverse")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # the server's choice
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 3 and len(children) == 2
    assert parent.info.status == "FINISHED" and parent.data.params["model.depth"] == "1,2"
    assert sorted(c.data.params["model.depth"] for c in children) == ["1", "2"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert {"train/loss_epoch", "val/loss", "val/seq_acc", "val/token_acc", "test/loss",
                "test/seq_acc", "test/token_acc"} <= set(child.data.metrics)
        assert child.data.params["optimizer.lr"] == "0.003"
        assert {d.tags[0].value for d in child.inputs.dataset_inputs} == {"train", "val", "test"}
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"samples.json", "environment", "hydra", "plots"} <= artifacts
        assert any(a.startswith("epoch") for a in artifacts)  # the best checkpoint
    logged = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"summary.csv", "summary.md", "plots"} <= logged
    assert any((folder / "artifacts").rglob("samples.json"))  # proxied to the server's disk

    version = client.get_model_version_by_alias("seq2seq-reverse", "champion")
    assert version.tags["sweep_run_id"] == parent.info.run_id
    mlflow.set_tracking_uri(url)
    model = mlflow.pyfunc.load_model("models:/seq2seq-reverse@champion")  # texts in and out
    (prediction,) = model.predict(pd.DataFrame({"source": ["1 2 3"]}))["prediction"]
    assert isinstance(prediction, str)


def test_server_going_away_fails_the_run_in_one_line_and_keeps_its_checkpoints(server, tmp_path):
    """A second server on the same database is stopped mid-training: after MLflow's retries
    (made short here) the run exits 3 with one line naming the server, its checkpoints kept;
    what it logged before is on the database (the run stays RUNNING: nothing could close it)."""
    url, folder = server
    port = free_port()
    proc = start_server(folder, port, "--db-url", LocalPostgres(folder / "postgres").url)
    env = {**os.environ, "SEQ2SEQ_OUTPUT_DIR": str(tmp_path), "OMP_NUM_THREADS": "1",
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    with (tmp_path / "train.log").open("w") as out:
        train = subprocess.Popen(
            [sys.executable, "-m", "pipeline.train", *TINY, "trainer.max_epochs=1000",
             f"logger.tracking_uri=http://127.0.0.1:{port}"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("runs/*/checkpoints/last.ckpt")):
            assert train.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.5)
        stopped = time.monotonic()
        stop_server(proc)
        status = train.wait(timeout=120)
        took = time.monotonic() - stopped
    finally:
        train.kill()
        stop_server(proc)
    log = (tmp_path / "train.log").read_text()
    print(f"the run exited {status} {took:.1f} s after the server was told to stop")
    assert status == 3, log[-3000:]
    assert took < 60
    assert f"the MLflow tracking server http://127.0.0.1:{port} stopped answering" in log
    assert "Traceback" not in log
    checkpoints = next(tmp_path.glob("runs/*/checkpoints"))
    assert {"last.ckpt", "interrupted.ckpt"} <= {p.name for p in checkpoints.iterdir()}
    assert str(checkpoints) in log

    client = MlflowClient(url)
    experiment = client.get_experiment_by_name("seq2seq-reverse")
    (run,) = client.search_runs([experiment.experiment_id],
                                filter_string="attributes.status = 'RUNNING'")
    assert {"train/loss_step", "val/seq_acc"} <= set(run.data.metrics)


def test_a_champion_logged_from_a_deleted_folder_is_served_through_the_server(server, tmp_path):
    """No shared disk: a sweep logs to the server from a working folder that is deleted
    afterwards; in another, empty folder, ``mlflow models serve`` (``make serve``'s command)
    serves ``models:/seq2seq-reverse@champion`` with only the server's URL: the registry, the
    model and its files all come through the server (proxied artifacts)."""
    url, folder = server
    work = tmp_path / "work"
    result = run_cli("-m", *TINY, "model.depth=1,2", f"logger.tracking_uri={url}",
                     output_dir=work)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    client = MlflowClient(url)
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("seq2seq-reverse").experiment_id],
        filter_string=f"tags.role = 'sweep' and tags.sweep_dir LIKE '{work}/%'")
    version = client.get_model_version_by_alias("seq2seq-reverse", "champion")
    assert version.tags["sweep_run_id"] == parent.info.run_id
    champion = client.get_run(version.run_id)
    assert champion.info.artifact_uri.startswith("mlflow-artifacts:")  # nothing on the client
    assert str(work) not in version.source
    shutil.rmtree(work)

    empty = tmp_path / "client"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEQ2SEQ_", "MLFLOW_"))}
    env.update(MLFLOW_TRACKING_URI=url, PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    server_log = folder / f"server-{url.rsplit(':', 1)[1]}.log"
    seen = server_log.stat().st_size
    port = free_port()
    with (tmp_path / "serve.log").open("w") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m",
             "models:/seq2seq-reverse@champion", "--env-manager", "local", "-h", "127.0.0.1",
             "-p", str(port)], cwd=empty, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        assert wait_healthy(f"http://127.0.0.1:{port}", serve, timeout=180), \
            (tmp_path / "serve.log").read_text()[-3000:]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", method="POST",
            headers={"Content-Type": "application/json"},
            data=json.dumps({"dataframe_split": {"columns": ["source"],
                                                 "data": [["1 2 3"], ["4 5"]]}}).encode())
        with urllib.request.urlopen(request, timeout=60) as reply:
            answer = json.loads(reply.read())
    finally:
        stop_group(serve)
    predictions = answer["predictions"]
    assert len(predictions) == 2 and all(isinstance(p["prediction"], str) for p in predictions)
    assert list(empty.iterdir()) == []  # the client's folder stays empty
    with server_log.open() as log:  # the server's access log: the model went through it
        log.seek(seen)
        served = log.read()
    downloaded = f"GET /api/2.0/mlflow-artifacts/artifacts/{champion.info.experiment_id}/models/"
    model_id = champion.data.tags["model_uri"].removeprefix("models:/")
    assert f"{downloaded}{model_id}/artifacts/MLmodel " in served


class SearchHosts:
    """Sweep processes of one search as separate hosts would run them: each its own working
    folder, all one PostgreSQL study (``SEQ2SEQ_OPTUNA_STORAGE``) and one server."""

    def __init__(self, url: str, storage: str, *args: str):
        self.args = ["-m", "hparams_search=optuna", *TINY, "seeds=1",
                     "hydra.sweeper.pruner=none", "hydra.sweeper.heartbeat_interval=1",
                     "data.train_size=512", f"logger.tracking_uri={url}", *args]
        self.env = {**os.environ, "SEQ2SEQ_OPTUNA_STORAGE": storage}
        self.procs: list[subprocess.Popen] = []
        self.works: list[Path] = []
        self.client = MlflowClient(url)

    def start(self, work: Path, *more: str) -> subprocess.Popen:
        work.mkdir()
        with (work / "console.txt").open("w") as out:
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "pipeline.train", *self.args, *more], cwd=ROOT,
                env={**self.env, "SEQ2SEQ_OUTPUT_DIR": str(work)}, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True))
        self.works.append(work)
        return self.procs[-1]

    def console(self, i: int) -> str:
        return (self.works[i] / "console.txt").read_text()

    def until(self, found, what: str, timeout: float = 240):
        deadline = time.monotonic() + timeout
        while not (value := found()):
            alive = all(p.poll() is None for p in self.procs)
            assert alive and time.monotonic() < deadline, f"no {what}: " + "".join(
                self.console(i)[-2000:] for i in range(len(self.procs)))
            time.sleep(0.1)
        return value

    def parent(self, work: Path):
        """The sweep parent run that the host in ``work`` created."""
        (parent,) = self.until(lambda: self.client.search_runs(
            [e.experiment_id for e in self.client.search_experiments()],
            filter_string=f"tags.role = 'sweep' and tags.sweep_dir LIKE '{work}/%'"),
            "sweep parent run")
        return parent

    def children(self, parent) -> list:
        runs = self.client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        return [r for r in runs if "superseded_by" not in r.data.tags
                and r.data.tags.get("role") != "ensemble"]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def study_of(parent, storage: str):
    import optuna

    return optuna.load_study(study_name=f"seq2seq-reverse-{parent.info.run_id}",
                             storage=storage)


def test_two_hosts_share_one_search_and_one_summary(server, tmp_path):
    """Two sweep processes, the second joining the first's search with ``sweep_id=``: the
    study's ``n_trials`` in total, each host some of them, no configuration trained twice,
    every trial a child of one parent; the host that finished the last trial writes the
    summary and registers the champion, the other says so and where the sweep is."""
    url, folder = server
    storage = LocalPostgres(folder / "postgres").url_of(OPTUNA_DB)
    trials = 4
    hosts = SearchHosts(url, storage, f"hydra.sweeper.n_trials={trials}",
                        "trainer.max_epochs=3")
    try:
        hosts.start(tmp_path / "first")
        parent = hosts.parent(tmp_path / "first")
        hosts.start(tmp_path / "second", f"sweep_id={parent.info.run_id}")
        codes = [p.wait(timeout=300) for p in hosts.procs]
    finally:
        hosts.stop()
    assert codes == [0, 0], hosts.console(0)[-3000:] + hosts.console(1)[-3000:]
    study = study_of(parent, storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * trials
    children = hosts.children(parent)
    assert len(children) == trials and all(r.info.status == "FINISHED" for r in children)
    assert len({r.data.tags["config_hash"] for r in children}) == trials  # none trained twice
    assert {Path(r.data.tags["job_dir"]).parents[2] for r in children} == set(hosts.works)
    summaries = [list(w.glob("sweeps/*/summary.md")) for w in hosts.works]
    assert sorted(map(len, summaries)) == [0, 1]  # one host wrote it
    quiet = hosts.console([len(s) for s in summaries].index(0))
    assert "summary: written by the sweep that finished trial" in quiet
    assert f"sweep:   {parent.info.run_id}" in quiet
    versions = hosts.client.search_model_versions("name = 'seq2seq-reverse'")
    assert sum(v.tags.get("sweep_run_id") == parent.info.run_id for v in versions) == 1
    assert hosts.client.get_run(parent.info.run_id).info.status == "FINISHED"


def test_a_search_host_killed_mid_trial_leaves_the_study_to_the_other(server, tmp_path):
    """The first of two hosts sharing one search is killed in the middle of a trial: the
    second finishes the study (``n_trials`` complete), retrying the killed trial from its
    checkpoint, and writes the summary."""
    url, folder = server
    storage = LocalPostgres(folder / "postgres").url_of(OPTUNA_DB)
    trials, epochs = 4, 4
    hosts = SearchHosts(url, storage, f"hydra.sweeper.n_trials={trials}",
                        f"trainer.max_epochs={epochs}")
    first, second = tmp_path / "first", tmp_path / "second"
    try:
        hosts.start(first)
        parent = hosts.parent(first)
        hosts.start(second, f"sweep_id={parent.info.run_id}")
        hosts.until(lambda: list(second.glob("sweeps/*/*/checkpoints/last.ckpt"))
                    or list(second.glob("sweeps/*/*/job.json")), "trial on the second host")
        mid_trial = hosts.until(
            lambda: [c for c in first.glob("sweeps/*/*/checkpoints/last.ckpt")
                     if not (c.parents[1] / "job.json").exists()],
            "trial in the middle of training on the first host")
        os.killpg(hosts.procs[0].pid, signal.SIGKILL)
        hosts.procs[0].wait(timeout=30)
        assert hosts.procs[1].wait(timeout=300) == 0, hosts.console(1)[-4000:]
    finally:
        hosts.stop()
    said = hosts.console(1)
    assert "View run" not in said and "[I " not in said  # MLflow's links, Optuna's lines
    assert "summary:  " in said

    study = study_of(parent, storage)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == trials and states.count("FAIL") == 1, states
    (killed,) = [t for t in study.trials if t.state.name == "FAIL"]
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.params == killed.params and retry.state.name == "COMPLETE"
    children = hosts.children(parent)
    assert len(children) == trials and all(r.info.status == "FINISHED" for r in children)
    assert len({r.data.tags["config_hash"] for r in children}) == trials  # none trained twice
    by_trial = {r.data.tags["optuna_trial"]: r for r in children}
    assert set(by_trial) == {str(t.number) for t in study.trials if t.state.name == "COMPLETE"}
    resumed = by_trial[str(retry.number)]
    assert resumed.data.tags["resumed_from"] == str(mid_trial[0])  # the first host's
    assert len(hosts.client.get_metric_history(resumed.info.run_id, "val/loss")) == epochs
    assert hosts.client.get_run(parent.info.run_id).info.status == "FINISHED"

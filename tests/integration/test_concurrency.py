"""Two commands at once: sweeps started at the same instant on a fresh store and on an
existing one, with the MLflow UI reading meanwhile, all finish and leave a healthy store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow import MlflowClient

from pipeline.tracking.server import stop_group, wait_healthy
from pipeline.tracking.store import half_migrated
from tests.helpers import ROOT, TINY, free_port

pytestmark = pytest.mark.slow


def start_sweeps(tmp_path, count: int = 2) -> list[subprocess.Popen]:
    """``count`` tiny 2-job sweeps released at the same instant (one torch thread each)."""
    env = {**os.environ, "SEQ2SEQ_OUTPUT_DIR": str(tmp_path / "outputs")}
    at = time.time() + 8  # every process has imported everything by then
    wait = f"import time; time.sleep(max(0, {at} - time.time()))"
    return [subprocess.Popen(
        [sys.executable, "-c", f"{wait}; import runpy, sys; sys.argv = ['pipeline.train', "
         f"'-m', *{TINY!r}, 'model.depth=1,2', 'threads=1', 'tags=[sweep{i}]']; "
         "runpy.run_module('pipeline.train', run_name='__main__')"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) for i in range(count)]


def finish(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:]


def check_store(tmp_path, sweeps: int) -> None:
    path = tmp_path / "outputs" / "mlflow.db"
    assert half_migrated(path) is None
    client = MlflowClient(f"sqlite:///{path}")
    runs = client.search_runs([client.get_experiment_by_name("seq2seq-reverse").experiment_id])
    parents = [r for r in runs if r.data.tags.get("role") == "sweep"]
    assert len(parents) == sweeps and all(p.info.status == "FINISHED" for p in parents)
    for parent in parents:
        children = [r for r in runs
                    if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert len(children) == 2
        assert all(c.info.status == "FINISHED" and "test/seq_acc" in c.data.metrics
                   for c in children)


def test_two_sweeps_at_once_on_a_fresh_store_then_on_the_existing_one(tmp_path):
    store = tmp_path / "outputs" / "mlflow.db"
    finish(start_sweeps(tmp_path))
    check_store(tmp_path, sweeps=2)

    port = free_port()
    ui = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{store}",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_healthy(base, ui, 120)
        procs = start_sweeps(tmp_path)
        answers = 0
        while any(p.poll() is None for p in procs):  # the UI reads while they write
            url = f"{base}/ajax-api/2.0/mlflow/experiments/search?max_results=10"
            with urllib.request.urlopen(url, timeout=30) as reply:
                answers += reply.status == 200
            time.sleep(1)
        finish(procs)
        assert answers > 0
    finally:
        stop_group(ui, grace=20)
    check_store(tmp_path, sweeps=4)

"""The SLURM launcher's path without a cluster: ``hydra/launcher=slurm_local`` runs every
job of a sweep through hydra-submitit-launcher and submitit's local executor (pickled, in
its own process, requeued like a SLURM job). A 2 x 2 sweep ends under one parent with its
summary; a job preempted as SLURM preempts one (SIGTERM, then submitit's SIGUSR2) is
requeued by submitit and continues its own run from its checkpoint, training nothing twice.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import lightning as L
import psutil
import pytest
import yaml
from mlflow import MlflowClient

from tests.helpers import ROOT, TINY

pytestmark = pytest.mark.slow
SLURM_LOCAL = "hydra/launcher=slurm_local"


class HoldOnce(L.Callback):
    """Holds the replicate whose folder is named ``replicate`` before batch ``batch`` of
    epoch ``epoch`` (0-based), once: writes ``<dirpath>/held`` with this process's id and
    waits there up to ``seconds``, so that a test preempts the job at a known point of its
    training. A requeued attempt finds the file and trains on."""

    def __init__(self, dirpath: str, replicate: str, epoch: int, batch: int,
                 seconds: float = 120):
        self.marker = Path(dirpath) / "held"
        self.hold = Path(dirpath).name == replicate
        self.epoch, self.batch, self.seconds = epoch, batch, seconds

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.hold or self.marker.exists() or (trainer.current_epoch, batch_idx) != (
                self.epoch, self.batch):
            return
        self.marker.write_text(str(os.getpid()))
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            time.sleep(0.05)


def _runs(tmp_path: Path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("seq2seq-reverse")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("role") == "sweep"]
    replicates = [r for r in runs if "seed" in r.data.params]  # the training runs
    return client, parent, replicates


def start_sweep(tmp_path: Path, *args: str) -> subprocess.Popen:
    """``python -m pipeline.train -m ARGS`` into ``tmp_path``, in its own session (submitit's
    controllers and jobs with it), its output in ``sweep.log``."""
    with (tmp_path / "sweep.log").open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.train", "-m", *args], cwd=ROOT, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "SEQ2SEQ_OUTPUT_DIR": str(tmp_path)})


def end_sweep(sweep: subprocess.Popen, timeout: float) -> int:
    """The sweep's exit status once it ends; past ``timeout`` seconds it is killed with
    every process of its session, and the test fails."""
    try:
        return sweep.wait(timeout=timeout)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.wait()


def _submitit_logs(sweep_dir: Path) -> dict[str, str]:
    """Each submitit job's log (``.submitit/<job id>/<job id>_0_log.out``), by job id."""
    return {p.parent.name: p.read_text() for p in sweep_dir.glob(".submitit/*/*_0_log.out")}


def test_a_submitit_sweep_is_one_parent_with_its_summary(tmp_path):
    """2 candidates x 2 seeds, each candidate one submitit job in its own process."""
    sweep = start_sweep(tmp_path, *TINY, "model.depth=1,2", "seeds=2", SLURM_LOCAL)
    status = end_sweep(sweep, timeout=400)
    assert status == 0, (tmp_path / "sweep.log").read_text()[-5000:]

    client, parent, children = _runs(tmp_path)
    assert parent.info.status == "FINISHED" and parent.data.params["model.depth"] == "1,2"
    assert len(children) == 4
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert all(c.info.status == "FINISHED" for c in children)
    assert sorted((c.data.params["model.depth"], c.data.params["seed"]) for c in children) == [
        ("1", "42"), ("1", "43"), ("2", "42"), ("2", "43")]
    assert len({c.data.tags["candidate"] for c in children}) == 2

    (sweep_dir,) = (tmp_path / "sweeps").iterdir()
    logs = _submitit_logs(sweep_dir)
    assert len(logs) == 2  # one submitit job per candidate, each completed in its process
    assert all("Job completed successfully" in log for log in logs.values())
    job_ids = {yaml.safe_load((sweep_dir / str(n) / ".hydra" / "hydra.yaml").read_text())[
        "hydra"]["job"]["id"] for n in (0, 1)}
    assert job_ids == set(logs)

    rows = list(csv.DictReader((sweep_dir / "summary.csv").open()))
    assert len(rows) == 2
    logged = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"summary.csv", "summary.md"} <= logged
    version = client.get_model_version_by_alias("seq2seq-reverse", "champion")
    assert version.tags["sweep_run_id"] == parent.info.run_id


def _steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, key)]


def test_a_preempted_job_is_requeued_and_continues_its_run(tmp_path):
    """One job trains seeds 42 and 43 of its candidate; while seed 43 trains (batch 3 of
    its 2nd epoch) the job gets what SLURM sends a preempted job, SIGTERM then submitit's
    SIGUSR2 (submitit's ``SlurmJob._interrupt``). submitit calls the launcher's
    ``checkpoint()``, Lightning saves ``interrupted.ckpt`` and the run ends KILLED, the job
    exits for requeue and the executor starts it again: seed 42 (complete) is skipped, seed
    43 continues its own run from ``interrupted.ckpt``. No step is logged twice and the
    resumed run takes as many steps as its unpreempted twin. The job waits at that batch
    (:class:`HoldOnce`) for the signals: submitit's handler raises ``SystemExit`` wherever
    the job happens to be, and this puts it in training, where a preemption mostly lands."""
    epochs = 3
    sweep = start_sweep(
        tmp_path, *TINY, "model.depth=2", "seeds=2", f"trainer.max_epochs={epochs}",
        "data.train_size=256", SLURM_LOCAL,
        "+callbacks.hold._target_=tests.integration.test_scaleout.HoldOnce",
        "+callbacks.hold.dirpath=${paths.run_dir}", "+callbacks.hold.replicate=seed43",
        "+callbacks.hold.epoch=1", "+callbacks.hold.batch=3")
    try:
        deadline = time.monotonic() + 300
        while not list(tmp_path.glob("sweeps/*/0/seed43/held")):
            assert sweep.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "sweep.log").read_text()[-3000:]
            time.sleep(0.2)
        (held,) = tmp_path.glob("sweeps/*/0/seed43/held")
        time.sleep(0.2)  # the file is written whole before the job waits
        job = psutil.Process(int(held.read_text()))
        assert "submitit.core._submit" in job.cmdline()  # the submitit job's own process
        _, _, before = _runs(tmp_path)
        first = next(r for r in before if r.data.params["seed"] == "42")
        assert first.info.status == "FINISHED"

        job.send_signal(signal.SIGTERM)  # as `scancel --signal` preempts a submitit job
        job.send_signal(signal.SIGUSR2)
    except BaseException:
        with contextlib.suppress(subprocess.TimeoutExpired):
            end_sweep(sweep, timeout=0)
        raise
    status = end_sweep(sweep, timeout=400)
    assert status == 0, (tmp_path / "sweep.log").read_text()[-5000:]

    sweep_dir = held.parents[2]
    ((job_id, log),) = _submitit_logs(sweep_dir).items()
    assert "Caught signal SIGUSR2" in log and "this job is preempted" in log
    assert f"Requeued job {job_id}" in log
    assert log.count("Starting with JobEnvironment") == 2  # the same job, started again
    assert "Job completed successfully" in log

    client, parent, children = _runs(tmp_path)
    assert parent.info.status == "FINISHED"
    assert len(children) == 2  # the requeued job made no run of its own
    assert all(c.info.status == "FINISHED" for c in children)
    runs = {c.data.params["seed"]: c for c in children}
    assert runs["42"].info.run_id == first.info.run_id
    assert runs["42"].info.end_time == first.info.end_time  # not trained again
    resumed, twin = runs["43"], runs["42"]
    assert resumed.data.tags["resumed_from"].endswith("/seed43/checkpoints/interrupted.ckpt")
    assert "error" not in resumed.data.tags

    # What the resumed run logged: each step once, as many as the unpreempted twin took
    # (Lightning logs `epoch` beside every metric; an epoch cut in two has no time/epoch_s).
    keys = {k for k in resumed.data.metrics if not k.startswith("system/") and k != "epoch"}
    assert keys == {k for k in twin.data.metrics if not k.startswith("system/") and k != "epoch"}
    for key in keys:
        steps = _steps(client, resumed.info.run_id, key)
        assert not [s for s, n in Counter(steps).items() if n > 1], (key, steps)
        if not key.startswith("time/"):
            assert len(steps) == len(_steps(client, twin.info.run_id, key)), key
    assert len(_steps(client, resumed.info.run_id, "val/loss")) == epochs
    assert len(_steps(client, resumed.info.run_id, "train/loss_step")) == epochs * 256 // 16
    assert len(list(csv.DictReader((sweep_dir / "summary.csv").open()))) == 1

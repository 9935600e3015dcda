"""Two torchrun commands as two hosts would run them, on one machine: c10d rendezvous over
127.0.0.1, one run folder and one MLflow store (``tests/integration/test_multinode.py``;
over NCCL, one GPU per host: ``tests/gpu``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
from mlflow import MlflowClient

from tests.helpers import ROOT, TINY, free_port

# Measured on a 2-core Xeon: about 50 s for two hosts x 2 epochs; a kill is noticed in 5 s.
WAIT_S = 300


class Hosts:
    """Two torchrun commands as two hosts of one CPU (``trainer=multinode_cpu``) or one GPU
    each (``gpus=True``: ``trainer=multinode``, each host sees its own device) would run
    them: the first hosts the rendezvous (started first, so it takes the endpoint), every
    process one torch thread, one run folder (``hydra.run.dir``, as on a shared file system)
    and one store."""

    def __init__(self, tmp_path: Path, *overrides: str, gpus: bool = False):
        self.tmp, self.overrides, self.gpus = tmp_path, overrides, gpus
        self.run_dir = tmp_path / "runs" / "job"
        self.procs: list[subprocess.Popen] = []

    def command(self, port: int) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nnodes=2",
                "--nproc-per-node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                "--rdzv-id=job", "--max-restarts=0", "-m", "pipeline.train",
                "trainer=multinode" if self.gpus else "trainer=multinode_cpu", *TINY,
                "threads=1", f"hydra.run.dir={self.run_dir}", *self.overrides]

    def start(self) -> Hosts:
        port = free_port()
        env = {**os.environ, "SEQ2SEQ_OUTPUT_DIR": str(self.tmp)}
        env = {k: v for k, v in env.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        self.procs = []
        for host in (0, 1):
            with open(self.tmp / f"host{host}.out", "w") as out, \
                    open(self.tmp / f"host{host}.err", "w") as err:
                own = {"CUDA_VISIBLE_DEVICES": str(host)} if self.gpus else {}
                self.procs.append(subprocess.Popen(self.command(port), cwd=ROOT,
                                                   env={**env, **own}, stdout=out, stderr=err))
            if host == 0:
                wait_for_port(port, self.procs[0])
        return self

    def wait(self, timeout: float = WAIT_S) -> list[int]:
        deadline = time.monotonic() + timeout
        try:
            return [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in self.procs]
        finally:
            self.stop()

    def stop(self) -> None:
        for proc in self.procs:
            for p in family(proc.pid):
                p.kill()

    def stderr(self, host: int) -> str:
        return (self.tmp / f"host{host}.err").read_text()

    def stdout(self, host: int) -> str:
        return (self.tmp / f"host{host}.out").read_text()

    def host_of_rank(self, rank: int) -> int:
        """Which host's torchrun runs the process of global rank ``rank`` (torchrun numbers
        the hosts itself under c10d)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for host, proc in enumerate(self.procs):
                for child in family(proc.pid):
                    try:
                        if child.environ().get("RANK") == str(rank):
                            return host
                    except psutil.Error:
                        continue
            time.sleep(0.2)
        raise AssertionError(f"no process of rank {rank}")


def family(pid: int) -> list[psutil.Process]:
    """A torchrun process and every process under it (its workers run in their own
    session, so a process group would miss them)."""
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the first host's torchrun exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on the rendezvous port {port}")


def wait_for(path: Path, hosts: Hosts, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert all(p.poll() is None for p in hosts.procs), "a host exited before " + path.name
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.05)


def the_run(tmp_path: Path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return client, runs[0]

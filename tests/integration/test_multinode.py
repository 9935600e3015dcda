"""Training across hosts with torchrun, for real on one machine: two torchrun commands, as two
hosts of one CPU each would run them (c10d rendezvous and gloo over 127.0.0.1), train one
model into one MLflow store; one host lost stops the other in one line, and the same
commands continue from the newest checkpoint."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from mlflow import MlflowClient

from pipeline.checkpoints import check_checkpoint
from tests.helpers.torchrun import Hosts, family, the_run, wait_for

RANK_RECORDER = "tests.helpers.rank_recorder.RankRecorder"
WRITES = "tests.integration.test_multinode.CheckpointWrites"
TORCHRUN_LINE = re.compile(r"^\[?[IWEF]\d{4} \d\d:\d\d:\d\d")


class CheckpointWrites(Callback):
    """Test-only: each checkpoint file this process writes (through the Trainer's
    ``AtomicCheckpointIO``), as ``<epoch> <file name>`` lines in
    ``<folder>/writes-rank<rank>.txt``."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def setup(self, trainer, pl_module, stage: str) -> None:
        io = trainer.strategy.checkpoint_io
        if getattr(io, "recorded", False):
            return
        save = io.save_checkpoint

        def recorded(checkpoint, path, storage_options=None):
            save(checkpoint, path, storage_options)
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.folder / f"writes-rank{trainer.global_rank}.txt", "a") as out:
                out.write(f"{checkpoint['epoch']} {Path(path).name}\n")

        io.save_checkpoint, io.recorded = recorded, True


def history(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, key)]


def training_metrics(run) -> list[str]:
    """What the training logs (Lightning's own ``epoch`` counter is logged with every line
    and MLflow's system metrics on their own clock: neither is a training's history)."""
    return [k for k in run.data.metrics if k != "epoch" and not k.startswith("system/")]


def own_lines(text: str) -> list[str]:
    """The lines the training wrote, without torchrun's own log lines (``W1205 08:12:36.39
    <pid> <file>:<line>] ...``: its agent's rendezvous warnings on a loaded machine)."""
    return [line for line in text.splitlines() if not TORCHRUN_LINE.match(line)]


def errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def test_two_hosts_train_one_model_as_one_run(tmp_path):
    """Both hosts exit 0; one FINISHED run with world size 2, each epoch's metrics once;
    rank 0 alone wrote a checkpoint per epoch; the ranks trained on disjoint halves of the
    data; the second host said nothing."""
    epochs = 2
    hosts = Hosts(tmp_path, f"trainer.max_epochs={epochs}",
                  "callbacks.model_checkpoint.save_top_k=-1",
                  f"+callbacks.rank_record._target_={RANK_RECORDER}",
                  f"+callbacks.rank_record.folder={tmp_path}/ranks",
                  "+callbacks.rank_record.job=0",
                  f"+callbacks.writes._target_={WRITES}",
                  f"+callbacks.writes.folder={tmp_path}/writes")
    started = time.monotonic()
    rank1 = hosts.start().host_of_rank(1)
    codes = hosts.wait()
    print(f"two hosts, {epochs} epochs: {time.monotonic() - started:.0f} s")
    assert codes == [0, 0], hosts.stderr(0) + hosts.stderr(1)

    client, run = the_run(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.tags["world_size"] == "2"
    for key in ("val/loss", "val/seq_acc", "train/loss_epoch"):
        steps = history(client, run.info.run_id, key)
        assert len(steps) == epochs == len(set(steps)), (key, steps)
    for key in training_metrics(run):
        steps = history(client, run.info.run_id, key)
        assert len(steps) == len(set(steps)), (key, steps)
    assert "model_uri" in run.data.tags
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
        f"epoch{e:03d}" for e in range(epochs)}  # every epoch's checkpoint, uploaded

    writes = tmp_path / "writes"
    assert not (writes / "writes-rank1.txt").exists()  # rank 0 alone writes checkpoints
    written = (writes / "writes-rank0.txt").read_text().split("\n")[:-1]
    assert sorted(written) == sorted(f"{e} {name}" for e in range(epochs)
                                     for name in (f"epoch{e:03d}.ckpt", "last.ckpt"))

    fit = {r: json.loads((tmp_path / "ranks" / f"job0-rank{r}-fit.json").read_text())
           for r in (0, 1)}
    assert fit[0]["world_size"] == fit[1]["world_size"] == 2
    shards = [set(fit[r]["train_rows"]) for r in (0, 1)]
    assert shards[0].isdisjoint(shards[1])  # each rank its half of epoch 0
    assert len(shards[0]) == len(shards[1]) == 32 and len(shards[0] | shards[1]) == 64

    assert "run:" in hosts.stdout(1 - rank1)  # rank 0 reports the run, once
    assert own_lines(hosts.stdout(rank1) + hosts.stderr(rank1)) == []  # rank 1: not a word


def test_a_killed_host_stops_the_other_in_one_line_and_the_same_commands_continue(tmp_path):
    """SIGKILL of one host's processes once the first checkpoint exists: the other exits
    within the strategy's timeout with one error line, the run FAILED with its checkpoints
    whole; the same two commands continue that run from the newest checkpoint, training no
    step twice."""
    timeout_s, epochs = 30, 4
    overrides = (f"trainer.max_epochs={epochs}", f"trainer.strategy.timeout.seconds={timeout_s}")
    hosts = Hosts(tmp_path, *overrides).start()
    checkpoints = hosts.run_dir / "checkpoints"
    wait_for(checkpoints / "last.ckpt", hosts)
    lost = hosts.host_of_rank(1)
    killed = time.monotonic()
    for p in family(hosts.procs[lost].pid):
        p.send_signal(signal.SIGKILL)
    survivor = hosts.procs[1 - lost]
    survivor.wait(timeout=timeout_s)
    took = time.monotonic() - killed
    hosts.wait(timeout=10)
    print(f"the other host exited {took:.1f} s after the kill")

    assert survivor.returncode != 0
    said = errors(hosts.stderr(1 - lost))
    assert len(said) == 1 and "processes stopped answering" in said[0], hosts.stderr(1 - lost)
    assert f"hydra.run.dir={hosts.run_dir}" in said[0]
    assert "Error executing job" not in hosts.stderr(1 - lost)  # no worker traceback
    client, run = the_run(tmp_path)
    assert run.info.status == "FAILED" and run.data.tags["error"].startswith("RankLost")
    for ckpt in checkpoints.glob("*.ckpt"):
        check_checkpoint(ckpt)  # whole: each loads
    assert (checkpoints / "interrupted.ckpt").exists()  # rank 0 saved where it stood

    again = Hosts(tmp_path, *overrides).start()
    assert again.wait() == [0, 0], again.stderr(0) + again.stderr(1)
    client, resumed = the_run(tmp_path)  # the same run, continued
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    assert resumed.data.tags["resumed_from"] == str(checkpoints / "interrupted.ckpt")
    assert "error" not in resumed.data.tags
    for key in ("val/loss", "train/loss_epoch"):
        steps = history(client, run.info.run_id, key)
        assert len(steps) == epochs == len(set(steps)), (key, steps)  # no epoch twice
    for key in training_metrics(resumed):
        steps = history(client, run.info.run_id, key)
        assert len(steps) == len(set(steps)), (key, steps)  # no step twice


def test_a_host_that_stops_answering_ends_the_run_after_the_timeout(tmp_path):
    """A host frozen (SIGSTOP: its connections stay open, as when a host drops off the
    network) is given up after ``trainer.strategy.timeout``, not before: one error line, the
    run FAILED."""
    timeout_s = 15
    hosts = Hosts(tmp_path, "trainer.max_epochs=4",
                  f"trainer.strategy.timeout.seconds={timeout_s}").start()
    wait_for(hosts.run_dir / "checkpoints" / "last.ckpt", hosts)
    frozen = hosts.host_of_rank(1)
    stopped = time.monotonic()
    for p in family(hosts.procs[frozen].pid):
        p.suspend()
    try:
        hosts.procs[1 - frozen].wait(timeout=timeout_s + 60)
        took = time.monotonic() - stopped
    finally:
        hosts.stop()
    print(f"the other host exited {took:.1f} s after the freeze (timeout {timeout_s} s)")
    assert timeout_s <= took <= timeout_s + 30
    said = errors(hosts.stderr(1 - frozen))
    assert len(said) == 1 and "Timed out" in said[0], hosts.stderr(1 - frozen)[-4000:]
    _, run = the_run(tmp_path)
    assert run.info.status == "FAILED"

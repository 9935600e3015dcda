"""Faults lose nothing: user errors in one line, NaN losses, signals, reproducibility."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from pipeline.errors import NonFiniteLossError
from pipeline.train import train
from tests.helpers import ROOT, TINY, run_cli


@pytest.mark.parametrize(
    ("overrides", "status", "message"),
    [
        ("model.depth=two", 2, "model.depth='two' is invalid: an int >= 1"),
        ("model.depth=0", 2, "model.depth=0 is invalid: an int >= 1, or an [encoder, decoder]"),
        ("model.depth=[1]", 2, "model.depth=[1] is invalid: an int >= 1, or an [encoder"),
        ("model.hidden_dim=-3", 2, "model.hidden_dim=-3 is invalid: an int >= 1"),
        ("model.dropout=1.5", 2, "model.dropout=1.5 is invalid: a probability in [0, 1)"),
        ("model.teacher_forcing=2", 2, "model.teacher_forcing=2.0 is invalid: a ratio in [0, 1]"),
        ("data.min_len=10 data.max_len=5", 2,
         "data.max_len=5 is invalid: an int >= data.min_len (10)"),
        ("data.batch_size=0", 2, "data.batch_size=0 is invalid: an int >= 1"),
        ("trainer=gpu", 2, "trainer.accelerator='gpu' is invalid: this machine has no GPU"),
        ("trainer=ddp_cpu trainer.devices=1", 2,
         "trainer.devices=1 is invalid: at least 2 devices for DDP"),
        ("logger.tracking_uri=http://127.0.0.1:9", 2,
         "is invalid: a running MLflow server (start one with `make server`)"),
        ("model.cell=transformer", 1, "Invalid value 'transformer', expected one of [lstm, gru]"),
        ("model.attention=maybe", 1,
         "Invalid value 'maybe', expected one of [none, additive, dot, general]"),
        ("model.no_such_key=1", 1, "Key 'no_such_key' not in 'ModelConfig'"),
        ("data=no_such_task", 1, "Could not find 'data/no_such_task'"),
    ],
)
def test_user_errors_exit_with_one_line(tmp_path, overrides, status, message):
    """Every bad setting stops before any work: the exit status, one line naming the key,
    the value and what is allowed (Hydra's own message for types and unknown names)."""
    if "trainer=gpu" in overrides and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run_cli(*overrides.split(), output_dir=tmp_path, timeout=120)
    assert result.returncode == status
    assert message in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing was started
    assert not (tmp_path / "data").exists()  # no data was built


def test_nan_loss_stops_the_run_failed_with_the_step(compose_cfg):
    cfg = compose_cfg(*TINY, "optimizer.lr=inf")
    with pytest.raises(NonFiniteLossError):
        train(cfg)
    client = MlflowClient(cfg.logger.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("seq2seq-reverse").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["error.step"].isdigit()
    assert "loss is nan" in run.data.tags["error"]


def test_same_config_and_seed_give_identical_metrics(compose_cfg, tmp_path):
    first = train(compose_cfg(*TINY, f"paths.run_dir={tmp_path}/first"))
    second = train(compose_cfg(*TINY, f"paths.run_dir={tmp_path}/second"))
    for key in ("val/loss", "test/loss", "test/token_acc", "train/loss_epoch"):
        assert first[key] == second[key]


def _start_slow_run(tmp_path):
    """A run long enough to be interrupted: many tiny epochs, a checkpoint after each."""
    args = [*TINY, "trainer.max_epochs=200", "data.train_size=512"]
    env = {"SEQ2SEQ_OUTPUT_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.train", *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not list(tmp_path.glob("runs/*/checkpoints/epoch*.ckpt")):
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-3000:]
        time.sleep(0.5)
    return proc


def _the_run(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("seq2seq-reverse").experiment_id])
    return run


def test_sigterm_saves_a_checkpoint_and_marks_the_run_killed(tmp_path):
    proc = _start_slow_run(tmp_path)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    assert _the_run(tmp_path).info.status == "KILLED"
    (ckpt,) = tmp_path.glob("runs/*/checkpoints/interrupted.ckpt")
    assert "state_dict" in torch.load(ckpt, weights_only=False)


def test_sigkill_leaves_a_readable_store_and_intact_checkpoints(tmp_path):
    proc = _start_slow_run(tmp_path)
    proc.kill()
    proc.wait(timeout=60)
    assert _the_run(tmp_path).info.status == "RUNNING"  # never closed: it was killed
    for ckpt in tmp_path.glob("runs/*/checkpoints/*.ckpt"):
        assert "state_dict" in torch.load(ckpt, weights_only=False)


def test_plain_ddp_inside_a_multirun_is_refused_before_any_rank_starts(tmp_path):
    """Lightning's plain ddp would re-launch the multirun command in every extra rank."""
    result = run_cli("-m", *TINY, "trainer=ddp_cpu", "trainer.strategy=ddp", "model.depth=1",
                     output_dir=tmp_path, timeout=120)
    assert result.returncode == 1
    assert "trainer.strategy='ddp' is invalid: ddp_spawn (trainer=ddp or ddp_cpu)" in (
        result.stderr)
    assert len(list((tmp_path / "sweeps").iterdir())) == 1
    assert not list(tmp_path.glob("sweeps/*/0/checkpoints"))


def test_a_full_disk_at_upload_keeps_what_was_logged_and_reports_the_error(
    compose_cfg, monkeypatch
):
    """Training finished, then every artifact upload fails (ENOSPC): the metrics stay, the
    run ends FAILED with the error as a tag (the disk is full, tagged so that a resumed
    sweep continues it), and the checkpoints are still on disk."""
    import errno

    from pipeline import report
    from pipeline.errors import DiskFull
    from pipeline.tracking import artifacts

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    def the_disk_fills_up_at_the_model_upload(*args, **kwargs):
        monkeypatch.setattr(MlflowClient, "log_artifact", disk_full)
        disk_full()

    cfg = compose_cfg(*TINY)
    monkeypatch.setattr(artifacts, "log_model", the_disk_fills_up_at_the_model_upload)
    monkeypatch.setattr(report, "log_text_model", the_disk_fills_up_at_the_model_upload)
    with pytest.raises(DiskFull, match="the disk is full"):
        train(cfg)
    client = MlflowClient(cfg.logger.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("seq2seq-reverse").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == ("DiskFull: the disk is full (No space left on device): "
                                      f"could not write {cfg.paths.output_dir}")
    assert run.data.tags["error.disk_full"] == "true"
    assert run.data.tags["error.traceback"].startswith("not saved: [Errno 28]")
    assert {"val/seq_acc", "test/seq_acc", "train/loss_epoch"} <= set(run.data.metrics)
    assert (Path(cfg.callbacks.model_checkpoint.dirpath) / "last.ckpt").is_file()

"""Every file the pipeline reads back is checked: truncated and garbage copies of each kind
are set aside with one line and rebuilt or ignored; a write on a full file system (a real
tmpfs) fails whole, naming the file."""

from __future__ import annotations

import errno
import json
import logging
import sqlite3
from pathlib import Path

import pytest
import torch

from pipeline.checkpoints import newest_loadable
from pipeline.data.datamodule import Seq2SeqDataModule
from pipeline.data.vocab import Vocab, load_vocabularies, vocabularies_json
from pipeline.errors import DamagedFile, DiskFull
from pipeline.files import read_sealed, write_json, write_sealed
from pipeline.tracking.outcome import records
from tests.helpers.disk import fill, mount_small_disk, unmount

DAMAGES = {
    "truncated": lambda blob: blob[: len(blob) // 2],
    "garbage": lambda blob: b"\x00\xff garbage \x13" * 7,
    "empty": lambda blob: b"",
}


def damage(path: Path, how: str) -> None:
    path.write_bytes(DAMAGES[how](path.read_bytes()))


@pytest.fixture
def small_disk(tmp_path):
    folder = tmp_path / "disk"
    why = mount_small_disk(folder, "1m")
    if why:
        pytest.skip(why)
    yield folder
    unmount(folder)


def test_a_write_on_a_full_disk_fails_whole_and_names_the_file(small_disk):
    target = small_disk / "cache.bin"
    write_sealed(target, b"old" * 100)
    fill(small_disk)
    with pytest.raises(DiskFull, match=f"the disk is full .*could not write {target}"):
        write_sealed(target, b"new" * 100_000)
    assert read_sealed(target) == b"old" * 100  # the previous file, whole
    assert sorted(p.name for p in small_disk.iterdir()) == ["cache.bin", "filler.bin"]


def _raised_from(cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise RuntimeError("a library's wrapper") from inner
    except RuntimeError as outer:
        return outer


def test_a_full_disk_is_recognised_anywhere_in_an_error_chain_and_named():
    assert DiskFull.of(ValueError("no such column")) is None
    assert DiskFull.of(_raised_from(OSError(errno.EACCES, "Permission denied", "/x"))) is None
    full = DiskFull.of(_raised_from(OSError(errno.ENOSPC, "No space left", "/out/a.ckpt")),
                       "/out")
    assert str(full) == "the disk is full (No space left on device): could not write /out/a.ckpt"
    quota = DiskFull.of(_raised_from(OSError(errno.EDQUOT, "quota")), "/out")
    assert str(quota).startswith("the disk is full (Disk quota exceeded)") and quota.where == "/out"
    store = DiskFull.of(_raised_from(sqlite3.OperationalError("database or disk is full")),
                        "/out", "sqlite:///out/mlflow.db")
    assert store.where == "the tracking store sqlite:///out/mlflow.db"
    already = DiskFull("/out/job.json")
    assert DiskFull.of(_raised_from(already), "/elsewhere") is already


@pytest.mark.parametrize("how", [*DAMAGES, "one byte changed"])
def test_a_sealed_file_that_is_not_whole_is_refused(tmp_path, how):
    path = write_sealed(tmp_path / "f", b"payload" * 50)
    if how == "one byte changed":
        blob = bytearray(path.read_bytes())
        blob[-3] ^= 1
        path.write_bytes(bytes(blob))
    else:
        damage(path, how)
    with pytest.raises(DamagedFile):
        read_sealed(path)


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_data_cache_is_set_aside_and_rebuilt(tmp_path, caplog, how):
    settings = dict(task="reverse", train_size=32, val_size=8, test_size=8, seed=1,
                    cache_dir=str(tmp_path), min_len=1, max_len=5, vocab_size=6)
    first = Seq2SeqDataModule(**settings)
    first.prepare_data()
    damage(first.cache_path, how)
    again = Seq2SeqDataModule(**settings)
    with caplog.at_level(logging.WARNING):
        again.prepare_data()
        again.setup()
    (line,) = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert line.startswith(f"the data cache {first.cache_path} is damaged (")
    assert line.endswith(f"set aside as {first.cache_path.name}.damaged; rebuilt")
    assert first.cache_path.with_name(first.cache_path.name + ".damaged").exists()
    assert (again.arrays("train")[0] == first.arrays("train")[0]).all()
    Seq2SeqDataModule(**settings).setup()  # the rebuilt cache loads: no second line
    assert sum("is damaged" in r.getMessage() for r in caplog.records) == 1


def _checkpoint(path: Path) -> Path:
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 0}, path)
    return path


@pytest.mark.parametrize("how", DAMAGES)
def test_resume_takes_the_newest_checkpoint_that_loads(tmp_path, caplog, how):
    last = _checkpoint(tmp_path / "last.ckpt")
    interrupted = _checkpoint(tmp_path / "interrupted.ckpt")  # newer
    damage(interrupted, how)
    with caplog.at_level(logging.WARNING):
        assert newest_loadable([interrupted, last]) == last
    assert not interrupted.exists() and (tmp_path / "interrupted.ckpt.damaged").exists()
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"checkpoint {interrupted} is damaged (")
    assert line.endswith("set aside as interrupted.ckpt.damaged; trying an older one")


def test_with_no_checkpoint_that_loads_the_replicate_starts_over(tmp_path, caplog):
    from types import SimpleNamespace

    from pipeline.tracking.resume import resume_checkpoint

    for name in ("last.ckpt", "interrupted.ckpt"):
        damage(_checkpoint(tmp_path / name), "truncated")
    run = SimpleNamespace(info=SimpleNamespace(run_id="r1"),
                          data=SimpleNamespace(tags={"checkpoint_dir": str(tmp_path)}))
    with caplog.at_level(logging.WARNING):
        assert resume_checkpoint(run) is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and lines[1].endswith("none left to resume from")
    assert lines[2] == (f"run r1 left no checkpoint that loads in {tmp_path}: this replicate "
                        "starts over")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "interrupted.ckpt.damaged", "last.ckpt.damaged"]


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_job_record_is_set_aside_and_ignored(tmp_path, caplog, how):
    for job in ("0", "1"):
        write_json(tmp_path / job / "job.json", {"job": int(job), "status": "FINISHED",
                                                 "seconds": 1.0})
    damage(tmp_path / "1" / "job.json", how)
    with caplog.at_level(logging.WARNING):
        assert [r["job"] for r in records(tmp_path)] == [0]
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"the job record {tmp_path}/1/job.json is damaged (")
    assert line.endswith("set aside as job.json.damaged; ignored")


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_vocabularies_are_named_in_one_line(tmp_path, how):
    path = tmp_path / "vocabularies.json"
    write_json(path, vocabularies_json(Vocab("ab"), Vocab("xy")))
    assert load_vocabularies(path)[1].itos[-2:] == ["x", "y"]
    damage(path, how)
    with pytest.raises(DamagedFile, match=f"^{path} is damaged \\("):
        load_vocabularies(path)


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_tokenizers_are_named_in_one_line(tmp_path, how):
    from pipeline.data.tokenize import Words, load_tokenizers, tokenizers_json

    path = tmp_path / "tokenizers.json"
    write_json(path, tokenizers_json(Words(), Words()))
    assert len(load_tokenizers(path)) == 2
    damage(path, how)
    with pytest.raises(DamagedFile, match=f"^{path} is damaged \\("):
        load_tokenizers(path)


@pytest.mark.slow  # makes an MLflow store: 5 s
def test_a_damaged_sweep_hand_off_is_rebuilt_from_the_parent_run(tmp_path, caplog):
    """The hand-off file of a running sweep is damaged: a job reads its parent from the
    store (the parent run records the sweep folder) and writes the file again."""
    from hydra.core.hydra_config import HydraConfig
    from mlflow import MlflowClient

    import pipeline.train  # noqa: F401  (registers the config schemas)
    from pipeline.tracking.handoff import PARENT_RUN_FILE, SweepInfo, sweep_info, write_sweep_info
    from pipeline.tracking.store import ensure_experiment, open_store
    from tests.helpers import compose_config

    sweep_dir = tmp_path / "sweeps" / "s1"
    cfg = compose_config(tmp_path, "hydra.mode=MULTIRUN", f"hydra.sweep.dir={sweep_dir}")
    uri = cfg.logger.tracking_uri
    open_store(uri)
    experiment = ensure_experiment(uri, "seq2seq-reverse", None)
    client = MlflowClient(uri)
    parent = client.create_run(experiment, tags={"role": "sweep",
                                                 "sweep_dir": str(sweep_dir)}).info.run_id
    client.log_param(parent, "model.depth", "1,2")
    write_sweep_info(sweep_dir, SweepInfo(parent, experiment, ["model.depth"], total=2))
    damage(sweep_dir / PARENT_RUN_FILE, "truncated")
    try:
        with caplog.at_level(logging.WARNING):
            info = sweep_info()
    finally:
        HydraConfig.instance().cfg = None  # no multirun for the next tests
    assert (info.run_id, info.experiment_id, info.swept) == (parent, experiment,
                                                             ["model.depth"])
    (line,) = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert line.endswith(f"set aside as {PARENT_RUN_FILE}.damaged; rebuilt from its parent "
                         f"run {parent}")
    assert json.loads((sweep_dir / PARENT_RUN_FILE).read_text())["run_id"] == parent

"""Real faults on disk, through the command line: a sweep whose output folder (a small
tmpfs) fills up mid-job, and a sweep whose files are damaged before it is resumed. Each
resumes and checks that every job ends FINISHED exactly once with its test metrics."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipeline.checkpoints import check_checkpoint
from tests.helpers import TINY, run_cli
from tests.helpers.disk import FILLER, mount_small_disk, unmount


def _children(out: Path):
    """The sweep's parent and its child runs by model.depth, and every superseded one."""
    client = MlflowClient(f"sqlite:///{out}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("seq2seq-reverse").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    live = {r.data.params["model.depth"]: r for r in children
            if "superseded_by" not in r.data.tags}
    assert len(live) == len(children) - sum("superseded_by" in r.data.tags for r in children)
    return client, parent, live, [r for r in children if "superseded_by" in r.data.tags]


def _all_finished_once(out: Path, depths: list[str], epochs: int):
    client, parent, live, superseded = _children(out)
    assert sorted(live) == sorted(depths) and not superseded  # each job one run, run once
    for depth, run in live.items():
        assert run.info.status == "FINISHED", depth
        assert "test/seq_acc" in run.data.metrics and run.data.tags["model_uri"], depth
        history = client.get_metric_history(run.info.run_id, "val/loss")
        assert len(history) == epochs, depth  # no epoch trained twice
    assert parent.info.status == "FINISHED"
    return live


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MB tmpfs as the output folder (skipped, with the reason, where mounting is not
    allowed)."""
    out = tmp_path / "out"
    why = mount_small_disk(out, "64m")
    if why:
        pytest.skip(why)
    yield out
    unmount(out)


def test_a_full_disk_stops_the_sweep_in_one_line_and_resuming_completes_it(
    tmp_path, small_disk
):
    """Three jobs; as the second starts its second epoch its disk fills up (store,
    checkpoints and runs on one tmpfs). That job stops, the third cannot start, each in one
    line, no traceback; the finished job and the store stay whole, no truncated or
    temporary file is left. Once space is back, resuming completes every job."""
    out = small_disk
    args = ["-m", *TINY, "model.depth=2,1,3", "trainer.max_epochs=2",
            "+callbacks.fill._target_=tests.helpers.disk.FillDiskAt",
            "+callbacks.fill.epoch=${model.depth}", f"+callbacks.fill.folder={out}",
            f"+callbacks.fill.marker_dir={tmp_path / 'markers'}"]
    full = run_cli(*args, output_dir=out)
    said = full.stdout + full.stderr
    assert full.returncode == 1, said[-3000:]
    assert "Traceback" not in said, said[-5000:]
    assert "the disk is full (No space left on device): could not write " in said
    assert "job failed, the sweep goes on: DiskFull: the disk is full" in said
    assert "/2/.hydra/config.yaml (Hydra's record of this job's config)" in said
    assert (out / FILLER).exists() and not list(out.rglob("*.tmp"))
    for ckpt in out.rglob("*.ckpt"):
        check_checkpoint(ckpt)  # every checkpoint on disk is whole
    _, parent, before, _ = _children(out)  # the store still reads
    assert before["2"].info.status == "FINISHED"
    assert before["1"].info.status in ("RUNNING", "FAILED")  # FAILED if the store had room
    assert "3" not in before  # it could not start

    (out / FILLER).unlink()
    resumed = run_cli(*args, f"sweep_id={parent.info.run_id}", output_dir=out)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    after = _all_finished_once(out, ["1", "2", "3"], epochs=2)
    assert after["2"].info.end_time == before["2"].info.end_time  # not run again
    assert after["1"].info.run_id == before["1"].info.run_id
    assert after["1"].data.tags["resumed_from"].endswith("last.ckpt")
    assert "error" not in after["1"].data.tags


def test_damaged_files_are_set_aside_and_the_resumed_sweep_completes(tmp_path):
    """The sweep is SIGKILLed in its second job; then the data cache is truncated and a
    garbage interrupted.ckpt (newer than last.ckpt) lies in the job's folder, as a failed
    copy would leave them. Resuming rebuilds the cache and continues from last.ckpt, each
    damaged file set aside with one line."""
    out = tmp_path / "out"
    args = ["-m", *TINY, "model.depth=2,1", "trainer.max_epochs=2",
            "+callbacks.kill._target_=tests.helpers.killer.KillAt",
            "+callbacks.kill.stage=training", "+callbacks.kill.epoch=${model.depth}",
            f"+callbacks.kill.marker_dir={tmp_path / 'killed'}"]
    assert run_cli(*args, output_dir=out).returncode == -signal.SIGKILL
    _, parent, before, _ = _children(out)
    assert before["2"].info.status == "FINISHED" and before["1"].info.status == "RUNNING"
    folder = Path(before["1"].data.tags["checkpoint_dir"])
    (folder / "interrupted.ckpt").write_bytes(b"PK\x03\x04 not a whole zip" * 10)
    (cache,) = (out / "data").glob("*.pt")
    cache.write_bytes(cache.read_bytes()[:1000])

    resumed = run_cli(*args, f"sweep_id={parent.info.run_id}", output_dir=out)
    said = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, said[-3000:]
    assert "Traceback" not in said
    assert f"checkpoint {folder / 'interrupted.ckpt'} is damaged (" in said
    assert "set aside as interrupted.ckpt.damaged; trying an older one" in said
    assert f"the data cache {cache} is damaged (" in said
    assert f"set aside as {cache.name}.damaged; rebuilt" in said
    after = _all_finished_once(out, ["1", "2"], epochs=2)
    assert after["1"].data.tags["resumed_from"] == str(folder / "last.ckpt")
    assert (folder / "interrupted.ckpt.damaged").exists()

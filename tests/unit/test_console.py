"""The console: which log lines reach it, the sweep's progress records and display, and the
lines a training and a sweep end with."""

from __future__ import annotations

import json
import logging
import time

import pandas as pd
import pytest

from pipeline import console
from pipeline.logs import ConsoleFilter, ConsoleFormatter, job_in_sweep
from pipeline.tracking import progress
from pipeline.tracking.outcome import JOB_FILE


def record(name: str, level: int, **extra) -> logging.LogRecord:
    rec = logging.LogRecord(name, level, __file__, 1, "a line", None, None)
    rec.__dict__.update(extra)
    return rec


@pytest.fixture
def quiet_console(monkeypatch):
    monkeypatch.delenv("SEQ2SEQ_VERBOSE", raising=False)
    monkeypatch.setattr(ConsoleFilter, "quiet_below", logging.NOTSET)
    logging.getLogger().setLevel(logging.INFO)
    return ConsoleFilter()


def test_the_console_shows_the_projects_lines_and_every_error_only(quiet_console):
    shown = quiet_console.filter
    assert shown(record("pipeline.train", logging.INFO))
    assert shown(record("hydra_plugins.seq2seq_optuna_sweeper", logging.INFO))
    assert not shown(record("lightning.pytorch.utilities.rank_zero", logging.INFO))
    assert not shown(record("mlflow.pyfunc", logging.WARNING))
    assert not shown(record("py.warnings", logging.WARNING))
    assert shown(record("mlflow.store", logging.ERROR))
    assert not shown(record("pipeline.tracking.outcome", logging.ERROR, console=False))


def test_a_sweeps_job_shows_only_warnings_and_errors(quiet_console):
    job_in_sweep()
    assert not quiet_console.filter(record("pipeline.report", logging.INFO))
    assert quiet_console.filter(record("pipeline.files", logging.WARNING))
    assert not quiet_console.filter(record("mlflow.pyfunc", logging.WARNING))
    assert quiet_console.filter(record("pipeline.tracking.outcome", logging.ERROR))


def test_verbose_shows_every_library_line(quiet_console, monkeypatch):
    monkeypatch.setenv("SEQ2SEQ_VERBOSE", "1")
    assert quiet_console.filter(record("lightning.pytorch", logging.INFO))


def test_warnings_and_errors_say_which_they_are():
    formatter = ConsoleFormatter()
    assert formatter.format(record("pipeline", logging.INFO)) == "a line"
    assert formatter.format(record("pipeline", logging.WARNING)) == "warning: a line"
    assert formatter.format(record("pipeline", logging.ERROR)) == "error: a line"


def write_replicate(folder, candidate, seed, status, value=None, test=None, seconds=10.0,
                    error=None, mode="max"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / progress.RECORD).write_text(json.dumps({
        "candidate": candidate, "seed": seed, "status": status, "monitor": "val/seq_acc",
        "mode": mode, "started": time.time() - seconds, "seconds": seconds, "value": value,
        "test": test, "error": error}))


def test_records_of_replicates_and_of_jobs_that_failed_before_any(tmp_path):
    write_replicate(tmp_path / "0" / "seed42", "model=cho", 42, "FINISHED", 0.9, 0.8)
    write_replicate(tmp_path / "0" / "seed43", "model=cho", 43, "RUNNING")
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / JOB_FILE).write_text(json.dumps({
        "job": 1, "status": "FAILED", "metric": "val/seq_acc", "value": None, "seconds": 1.0,
        "error": "ConfigError: model.hidden_dim=-1 is invalid", "candidate": "model=simple",
        "replicates": 2}))
    found = progress.read(tmp_path)
    assert sorted((r.candidate, r.seed, r.status, r.runs) for r in found) == [
        ("model=cho", 42, "FINISHED", 1), ("model=cho", 43, "RUNNING", 1),
        ("model=simple", -1, "FAILED", 2)]
    failed = next(r for r in found if r.status == "FAILED")
    assert failed.error.startswith("ConfigError: model.hidden_dim=-1")


def test_a_replicates_line_names_it_and_rounds_its_scores():
    entry = progress.Replicate("model=cho model.depth=2", 43, "FINISHED", "val/seq_acc", "max",
                               0.0, 43.2, 0.93812, 0.9311)
    assert console.replicate_line(3, 30, entry) == (
        " 3/30 ok      model=cho model.depth=2 seed 43  val/seq_acc 0.938  test/seq_acc 0.931 "
        "in 43 s")
    entry.status, entry.error = "FAILED", "FloatingPointError: the loss is nan at step 3"
    assert console.replicate_line(4, 30, entry).endswith(
        "FAILED  model=cho model.depth=2 seed 43 after 43 s: FloatingPointError: the loss is nan "
        "at step 3")


@pytest.mark.parametrize(("mode", "best"), [("max", "b 0.950 (2)"), ("min", "a 0.500 (1)")])
def test_the_best_candidate_so_far_by_its_mean(mode, best):
    done = [progress.Replicate(c, s, "FINISHED", "val/x", mode, 0.0, 1.0, v)
            for c, s, v in (("a", 1, 0.5), ("b", 1, 0.9), ("b", 2, 1.0))]
    assert console.best_so_far(done) == best


def test_the_display_prints_each_finished_replicate_once(tmp_path, capsys):
    display = console.SweepDisplay(tmp_path, total=3, parallel=2)
    assert not display.live  # not a terminal: the lines alone
    display.start()
    write_replicate(tmp_path / "0", "model=cho", 42, "FINISHED", 0.9, 0.8)
    write_replicate(tmp_path / "1", "model=seq2seq", 42, "RUNNING")
    display.poll()
    display.poll()
    write_replicate(tmp_path / "1", "model=seq2seq", 42, "FAILED", error="ValueError: no")
    display.stop()
    said = capsys.readouterr()
    assert said.out == ""
    lines = said.err.splitlines()
    assert lines == ["1/3 ok      model=cho seed 42  val/seq_acc 0.900  test/seq_acc 0.800 in 10 s",
                     "2/3 FAILED  model=seq2seq seed 42 after 10 s: ValueError: no"]
    task = display.progress.tasks[0]
    assert task.completed == 2 and "1 failed" in task.fields["state"]


def test_the_sweeps_table_has_a_verdict_against_the_best(capsys):
    table = pd.DataFrame({
        "candidate": ["model=bahdanau", "model=cho", "model=simple"], "n": [3, 3, 3],
        "status": ["FINISHED"] * 3,
        "val/seq_acc": [0.998, 0.990, 0.4], "val/seq_acc ci_low": [0.996, 0.98, 0.3],
        "val/seq_acc ci_high": [1.0, 1.0, 0.5],
        "p welch holm": [float("nan"), 0.2, 0.3], "p paired holm": [float("nan"), 0.4, 1e-5],
        "vs best: beaten": [False, False, True]})
    console.print_sweep(table, "val/seq_acc", [("champion", "models:/x@champion")])
    out = capsys.readouterr().out
    assert "0.998 ± 0.002" in out
    rows = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("model=")}
    assert rows["model=bahdanau"].rstrip().endswith("best")
    assert "no difference (p = 0.200)" in rows["model=cho"]
    assert "worse (p < 0.001)" in rows["model=simple"]
    assert out.splitlines()[-1] == "champion: models:/x@champion"


def test_a_trainings_result_rounds_its_test_scores_and_says_where(capsys):
    console.print_result(console.RunResult(
        {"test/seq_acc": 0.99612, "test/loss": 0.0001234, "test/seq_acc/len_01-02": 1.0,
         "val/seq_acc": 0.9}, ("val/seq_acc", 0.998),
        [("run", "abc  http://ui/#/run"), ("model", "models:/m/1")]))
    assert capsys.readouterr().out.splitlines() == [
        "test: loss 1.23e-04  seq_acc 0.996  (best val/seq_acc 0.998)",
        "run:   abc  http://ui/#/run", "model: models:/m/1"]


def test_a_training_outside_a_terminal_logs_a_line_an_epoch(caplog):
    from types import SimpleNamespace

    import torch

    from pipeline.progress_bar import EpochLines, progress_callbacks

    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, current_epoch=2,
                              max_epochs=10, callback_metrics={
                                  "train/loss": torch.tensor(0.41234),
                                  "val/seq_acc": torch.tensor(0.8816)})
    lines = EpochLines()
    with caplog.at_level(logging.INFO, logger="pipeline.progress_bar"):
        lines.on_validation_epoch_end(trainer, None)  # resumed mid-epoch: no start seen
        lines.on_train_epoch_start(trainer, None)
        lines.on_validation_epoch_end(trainer, None)
    said = [r.getMessage() for r in caplog.records]
    assert said[0] == "epoch 3/10: train/loss 0.412, val/seq_acc 0.882"
    assert said[1].startswith("epoch 3/10: train/loss 0.412, val/seq_acc 0.882 (")
    assert isinstance(progress_callbacks(False)[0], EpochLines)
    assert progress_callbacks(True)[0]._console_kwargs == {"stderr": True}

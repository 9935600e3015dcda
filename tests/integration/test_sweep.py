"""A real ``python -m pipeline.train -m`` multirun into a temporary MLflow store."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from tests.helpers import ROOT, TINY, run_cli


def test_multirun_makes_one_parent_and_a_child_per_job(tmp_path):
    result = run_cli("-m", *TINY, "model.depth=1,2", output_dir=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("seq2seq-reverse")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("role") == "sweep"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2 and len(runs) == 3
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["model.depth"] == "1,2"
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert {"val/seq_acc", "val/token_acc", "test/seq_acc", "val/loss"} <= set(
            child.data.metrics
        )
    assert sorted(c.data.params["model.depth"] for c in children) == ["1", "2"]
    assert sorted(c.info.run_name for c in children) == ["model.depth=1", "model.depth=2"]

    sweep_dir = next((tmp_path / "sweeps").iterdir())
    rows = list(csv.DictReader((sweep_dir / "summary.csv").open()))
    assert len(rows) == 2
    accuracies = [float(r["val/seq_acc"]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    best = max(children, key=lambda c: c.data.metrics["val/seq_acc"])
    assert parent.data.metrics["best/val/seq_acc"] == best.data.metrics["val/seq_acc"]
    logged = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"summary.csv", "summary.md"} <= logged


def test_parallel_sweep_isolates_a_failed_job_and_crowns_the_best(tmp_path):
    """Two jobs side by side (joblib) into a fresh store; the one with lr=inf hits a NaN
    loss: it ends FAILED with the error, the other FINISHES, the sweep exits 1."""
    result = run_cli("-m", *TINY, "optimizer.lr=0.003,inf", "hydra/launcher=joblib",
                     "hydra.launcher.n_jobs=2", output_dir=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "database is locked" not in result.stderr

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("seq2seq-reverse")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("role") == "sweep"]
    children = {r.data.params["optimizer.lr"]: r for r in runs if r is not parent
                and "mlflow.parentRunId" in r.data.tags}
    ok, bad = children["0.003"], children["inf"]
    assert ok.info.status == "FINISHED" and bad.info.status == "FAILED"
    assert bad.data.tags["error"].startswith("NonFiniteLossError: loss is nan")
    assert bad.data.tags["error.step"].isdigit()
    assert [a.path for a in client.list_artifacts(bad.info.run_id, "error")] == [
        "error/traceback.txt"
    ]
    assert parent.info.status == "FAILED" and parent.data.tags["failed_jobs"] == "1"
    sweep_dir = next((tmp_path / "sweeps").iterdir())
    statuses = {r["status"] for r in csv.DictReader((sweep_dir / "summary.csv").open())}
    assert statuses == {"FINISHED", "FAILED"}

    # What every child shows, and what the parent shows.
    artifacts = {a.path for a in client.list_artifacts(ok.info.run_id)}
    assert {"samples.json", "environment", "hydra", "plots"} <= artifacts
    plot_files = {a.path for a in client.list_artifacts(ok.info.run_id, "plots")}
    assert {"plots/attention_0.png", "plots/accuracy_by_length.png"} <= plot_files
    assert {d.tags[0].value for d in ok.inputs.dataset_inputs} == {"train", "val", "test"}
    for tag in ("config_hash", "host", "git.dirty", "variant", "model_uri"):
        assert ok.data.tags[tag]
    parent_plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/grid.png", "plots/accuracy_by_length.png"} <= parent_plots

    # The best child is the champion, and decodes from the command line.
    version = client.get_model_version_by_alias("seq2seq-reverse", "champion")
    assert version.tags["sweep_run_id"] == parent.info.run_id
    predicted = subprocess.run(
        [sys.executable, "-m", "pipeline.predict", "model_uri=models:/seq2seq-reverse@champion",
         'inputs=["1 2 3"]'], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "SEQ2SEQ_OUTPUT_DIR": str(tmp_path)},
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert predicted.stdout.startswith("1 2 3\t")


def test_optuna_sweep_runs_trials_as_children(tmp_path):
    result = run_cli("-m", "hparams_search=optuna", *TINY, "hydra.sweeper.n_trials=3",
                     output_dir=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("seq2seq-reverse")
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 3 and all(c.info.status == "FINISHED" for c in children)
    sweep_dir = next((tmp_path / "sweeps").iterdir())
    assert (sweep_dir / "optimization_results.yaml").exists()
    study = _study(tmp_path)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3


def _study(tmp_path):
    """The one study of the sweep(s) in ``tmp_path``'s optuna.db."""
    import optuna

    storage = f"sqlite:///{tmp_path}/optuna.db"
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def test_two_workers_share_one_study_and_prune(tmp_path):
    """6 trials, 2 in flight (joblib), no batch: each trial one child run of the one parent,
    none twice. Trials with 3 epochs are pruned after their 2nd (a threshold no tiny model
    reaches), those with 1 complete: pruned runs end KILLED with their curve, PRUNED in the
    study and the summary, outside its statistics."""
    result = run_cli(
        "-m", "hparams_search=optuna", *TINY, "seeds=1", "hydra.sweeper.n_trials=6",
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
        "trainer.max_epochs=choice(1,3)",
        "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:0.99,"
        "n_warmup_steps:1}", output_dir=tmp_path, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("seq2seq-reverse").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("role") == "sweep"]
    children = [r for r in runs if r is not parent]
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert sorted(int(c.data.tags["optuna_trial"]) for c in children) == list(range(6))
    assert len({c.data.tags["config_hash"] for c in children}) == 6
    study = _study(tmp_path)
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    states = {t.number: t.state.name for t in study.trials}
    assert sorted(states) == list(range(6))
    for child in children:
        number = int(child.data.tags["optuna_trial"])
        epochs = child.data.params["trainer.max_epochs"]
        curve = client.get_metric_history(child.info.run_id, "val/seq_acc")
        if epochs == "3":
            assert states[number] == "PRUNED" and child.info.status == "KILLED"
            assert child.data.tags["pruned"] == "2" and len(curve) == 2
        else:
            assert states[number] == "COMPLETE" and child.info.status == "FINISHED"
            assert study.trials[number].value == child.data.metrics["best/val/seq_acc"]
    pruned = sum(s == "PRUNED" for s in states.values())
    assert 0 < pruned < 6  # the sampler's seed makes both kinds
    assert parent.info.status == "FINISHED"
    sweep_dir = next((tmp_path / "sweeps").iterdir())
    rows = list(csv.DictReader((sweep_dir / "summary.csv").open()))
    assert sum(r["status"].startswith("PRUNED") for r in rows) == pruned
    assert all(r["status"] == "FINISHED" for r in rows[:6 - pruned])
    assert "pruned (stopped early by the search's pruner)" in (sweep_dir / "summary.md").read_text()


def test_a_search_killed_mid_trial_resumes_without_losing_or_rerunning_a_trial(tmp_path):
    """SIGKILL the search while trial 1 trains (trial 0 finished); sweep_id= continues the
    same study: the dead trial, failed once its heartbeat stops, is retried with its
    parameters and its run continues from last.ckpt; trial 0 is not run again."""
    args = ["-m", "hparams_search=optuna", *TINY, "seeds=1", "hydra.sweeper.n_trials=2",
            "hydra.sweeper.pruner=none", "hydra.sweeper.heartbeat_interval=1",
            "trainer.max_epochs=4", "data.train_size=512"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.train", *args], cwd=ROOT, start_new_session=True,
        env={**os.environ, "SEQ2SEQ_OUTPUT_DIR": str(tmp_path)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.time() + 180
    while not list(tmp_path.glob("sweeps/*/1/checkpoints/last.ckpt")):
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-3000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert [t.state.name for t in _study(tmp_path).trials] == ["COMPLETE", "RUNNING"]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("seq2seq-reverse").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("role") == "sweep"]
    before = {r.data.tags["optuna_trial"]: r for r in runs if r is not parent}

    result = run_cli(*args, f"sweep_id={parent.info.run_id}", output_dir=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    study = _study(tmp_path)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert study.trials[2].params == study.trials[1].params
    assert study.trials[2].system_attrs["failed_trial"] == 1
    runs = client.search_runs([client.get_experiment_by_name("seq2seq-reverse").experiment_id])
    children = {r.info.run_id: r for r in runs if r.info.run_id != parent.info.run_id}
    assert set(children) == {r.info.run_id for r in before.values()}  # no run added
    first, killed = children[before["0"].info.run_id], children[before["1"].info.run_id]
    assert first.info.end_time == before["0"].info.end_time  # not run again
    assert killed.info.status == "FINISHED" and killed.data.tags["optuna_trial"] == "2"
    assert killed.data.tags["resumed_from"].endswith("last.ckpt")
    assert len(client.get_metric_history(killed.info.run_id, "val/loss")) == 4
    assert study.trials[2].value == killed.data.metrics["best/val/seq_acc"]
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"


@pytest.mark.parametrize("sweeper", ["basic", "optuna"])
def test_ddp_inside_a_multirun_stays_one_sweep(tmp_path, sweeper):
    """trainer=ddp_cpu (ddp_spawn, 2 ranks) in a 2-job multirun: one sweep folder, one
    parent, one child per job; both ranks of a job train the same config on disjoint
    halves of the data, and what MLflow holds is what every rank computed after the
    reduction (each rank writes a file: tests/helpers/rank_recorder.py)."""
    jobs = (["model.depth=1,2"] if sweeper == "basic"
            else ["hparams_search=optuna", "hydra.sweeper.n_trials=2"])
    ranks = tmp_path / "ranks"
    result = run_cli("-m", *TINY, "trainer=ddp_cpu", *jobs,
                     "+callbacks.rank_record._target_=tests.helpers.rank_recorder.RankRecorder",
                     f"+callbacks.rank_record.folder={ranks}",
                     "+callbacks.rank_record.job=${hydra:job.num}", output_dir=tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    assert len(list((tmp_path / "sweeps").iterdir())) == 1
    assert not (tmp_path / "runs").exists()
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("seq2seq-reverse").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 3 and len(children) == 2
    for child in children:
        assert child.info.status == "FINISHED"
        job = child.data.params["callbacks.rank_record.job"]
        fit = [json.loads((ranks / f"job{job}-rank{r}-fit.json").read_text()) for r in (0, 1)]
        test = [json.loads((ranks / f"job{job}-rank{r}-test.json").read_text()) for r in (0, 1)]
        assert [f["world_size"] for f in fit] == [2, 2]
        assert fit[0]["hparams"] == fit[1]["hparams"]  # the same config on both ranks
        assert str(fit[0]["hparams"]["net"]["depth"]) == child.data.params["model.depth"]
        rows = [set(f["train_rows"]) for f in fit]
        assert not rows[0] & rows[1] and len(rows[0] | rows[1]) == 64  # split, all covered
        # the global batch is the configured one: two ranks of 8 rows per step
        assert fit[0]["train_batches"] == fit[1]["train_batches"] == 64 // 16
        for key in ("val/loss", "val/seq_acc"):
            assert fit[0]["metrics"][key] == fit[1]["metrics"][key]
            assert child.data.metrics[key] == pytest.approx(fit[0]["metrics"][key])
        for key in ("test/loss", "test/seq_acc", "test/token_acc"):
            assert test[0]["metrics"][key] == test[1]["metrics"][key]
            assert child.data.metrics[key] == pytest.approx(test[0]["metrics"][key])


def _sweep_runs(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("seq2seq-reverse").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("role") == "sweep"]
    children = {r.data.params["model.depth"]: r for r in runs if r is not parent}
    return client, parent, children


def test_resume_skips_finished_jobs_and_continues_the_killed_one(tmp_path):
    """SIGKILL the sweep while job 1 trains (job 0 finished); ``sweep_id=`` resumes it under
    the same parent: job 0 is not run again, job 1 continues its own run from last.ckpt."""
    args = ["-m", *TINY, "model.depth=1,2", "trainer.max_epochs=4", "data.train_size=512"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.train", *args], cwd=ROOT, start_new_session=True,
        env={**os.environ, "SEQ2SEQ_OUTPUT_DIR": str(tmp_path)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.time() + 180
    while not list(tmp_path.glob("sweeps/*/1/checkpoints/last.ckpt")):
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-3000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)

    client, parent, before = _sweep_runs(tmp_path)
    assert before["1"].info.status == "FINISHED" and before["2"].info.status == "RUNNING"
    done_epochs = len(client.get_metric_history(before["2"].info.run_id, "val/loss"))
    assert 1 <= done_epochs < 4

    result = run_cli(*args, f"sweep_id={parent.info.run_id}", output_dir=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client, resumed_parent, after = _sweep_runs(tmp_path)
    assert resumed_parent.info.run_id == parent.info.run_id
    assert resumed_parent.info.status == "FINISHED"
    assert {r.info.run_id for r in after.values()} == {r.info.run_id for r in before.values()}
    assert after["1"].info.end_time == before["1"].info.end_time  # not run again
    assert after["2"].info.status == "FINISHED"
    assert after["2"].data.tags["resumed_from"].endswith("last.ckpt")
    history = client.get_metric_history(after["2"].info.run_id, "val/loss")
    assert len(history) == 4  # the epochs before the kill plus the rest, none twice
    assert "test/seq_acc" in after["2"].data.metrics
    new_sweep = max((tmp_path / "sweeps").iterdir())
    rows = list(csv.DictReader((new_sweep / "summary.csv").open()))
    assert sorted(r["status"] for r in rows) == ["FINISHED", "FINISHED"]


def test_resume_with_an_unknown_sweep_id_stops_in_one_line(tmp_path):
    result = run_cli("-m", *TINY, "model.depth=1", "sweep_id=nope", output_dir=tmp_path)
    assert result.returncode == 2
    assert "sweep_id='nope' is invalid: the run id of a sweep's parent run" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_jobs_killed_at_any_stage_resume_to_complete_runs(tmp_path):
    """Four jobs, each SIGKILLed once at another stage (training, between fit and test,
    during test, during the model upload), the sweep resumed after each kill: every child
    ends FINISHED with its test metrics and its model, in its own run, no epoch trained
    twice."""
    markers = tmp_path / "killed"
    args = ["-m", *TINY, "trainer.max_epochs=3",
            "+callbacks.kill._target_=tests.helpers.killer.KillAt",
            "+callbacks.kill.stage=training,after_fit,test,upload",
            f"+callbacks.kill.marker_dir={markers}"]
    result = run_cli(*args, output_dir=tmp_path)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    sweep_dir = next((tmp_path / "sweeps").iterdir())
    parent = json.loads((sweep_dir / "mlflow_parent_run.json").read_text())["run_id"]
    for _ in range(4):
        result = run_cli(*args, f"sweep_id={parent}", output_dir=tmp_path)
        if result.returncode != -signal.SIGKILL:
            break
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in markers.iterdir()) == [
        "after_fit.killed", "test.killed", "training.killed", "upload.killed"]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("seq2seq-reverse").experiment_id])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent]
    assert len(children) == 4  # each job kept its own run: none superseded
    for child in children:
        stage = child.data.params["callbacks.kill.stage"]
        assert child.info.status == "FINISHED", stage
        assert "test/seq_acc" in child.data.metrics and child.data.tags["model_uri"], stage
        assert "resumed_from" in child.data.tags, stage
        epochs = client.get_metric_history(child.info.run_id, "val/loss")
        assert len(epochs) == 3, stage  # none trained twice
    assert client.get_run(parent).info.status == "FINISHED"


def test_a_finished_sweep_keeps_each_checkpoint_once(tmp_path):
    """The run folders keep no checkpoint once their runs finished; the artifact store holds
    each run's best checkpoint once (last.ckpt only served to resume), and its model."""
    result = run_cli("-m", *TINY, "model.depth=1,2", "trainer.max_epochs=2", output_dir=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list((tmp_path / "sweeps").rglob("*.ckpt"))
    stored = list((tmp_path / "mlartifacts").rglob("*.ckpt"))
    assert len(stored) == 2  # 2 runs x the best
    assert all(p.name.startswith("epoch") for p in stored)
    assert len(list((tmp_path / "mlartifacts").rglob("weights.pt"))) == 2  # the models


def test_replicates_give_every_candidate_its_statistics(tmp_path):
    """2 candidates x 3 seeds: 6 FINISHED children, 3 per candidate tag; the parent's summary
    has n = 3 per candidate, means equal to the children's, intervals around them, p-values for the
    comparison, the words, the plots, and a champion from the best candidate."""
    result = run_cli("-m", *TINY, "model=seq2seq,bahdanau", "seeds=3", output_dir=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("seq2seq-reverse").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("role") == "sweep"]
    (ensemble,) = [r for r in runs if r.data.tags.get("role") == "ensemble"]
    children = [r for r in runs if r is not parent and r is not ensemble]
    assert len(children) == 6 and all(c.info.status == "FINISHED" for c in children)
    candidates: dict[str, list] = {}
    for child in children:
        candidates.setdefault(child.data.tags["candidate"], []).append(child)
    assert sorted(len(c) for c in candidates.values()) == [3, 3]
    for replicates in candidates.values():
        assert sorted(r.data.params["seed"] for r in replicates) == ["42", "43", "44"]
        assert len({r.data.params["data.seed"] for r in replicates}) == 1  # same data
        name = replicates[0].data.tags["candidate_name"]
        assert sorted(r.info.run_name for r in replicates) == [
            f"{name} seed={s}" for s in (42, 43, 44)]

    sweep_dir = next((tmp_path / "sweeps").iterdir())
    rows = list(csv.DictReader((sweep_dir / "summary.csv").open()))
    assert len(rows) == 2 and len(list(csv.DictReader((sweep_dir / "runs.csv").open()))) == 6
    by_name = {rs[0].data.tags["candidate_name"]: rs for rs in candidates.values()}
    for row in rows:
        replicates = by_name[row["candidate"]]
        assert row["n"] == "3"
        for metric in ("val/seq_acc", "test/seq_acc", "test/loss"):
            values = [r.data.metrics[metric] for r in replicates]
            assert float(row[metric]) == pytest.approx(sum(values) / 3)
            low, high = float(row[f"{metric} ci_low"]), float(row[f"{metric} ci_high"])
            assert low <= float(row[metric]) <= high
    assert rows[1]["p welch"] != "" and rows[1]["p welch holm"] != ""
    assert rows[1]["p paired"] != ""  # every test example's score was logged
    words = (sweep_dir / "summary.md").read_text()
    assert "beats" in words or "do not differ significantly" in words
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/grid.png", "plots/accuracy_by_length.png", "plots/curves.png"} <= plots
    champion = parent.data.tags["champion_run_id"]
    assert champion in {r.info.run_id for r in by_name[rows[0]["candidate"]]}
    assert rows[0]["candidate"] in parent.data.tags["champion_reason"]


def test_resume_reruns_only_the_killed_replicate(tmp_path):
    """SIGKILL the second replicate (seed 43) of the first candidate while it trains: the resumed
    sweep skips seed 42, continues seed 43 in its own run, and runs the rest."""
    markers = tmp_path / "killed"
    args = ["-m", *TINY, "model.depth=1,2", "seeds=3", "trainer.max_epochs=2",
            "+callbacks.kill._target_=tests.helpers.killer.KillAt",
            "+callbacks.kill.stage=training",
            f"+callbacks.kill.marker_dir={markers}", "+callbacks.kill.seed=${seed}",
            "+callbacks.kill.only_seed=43"]
    assert run_cli(*args, output_dir=tmp_path).returncode == -signal.SIGKILL
    client, parent, _ = _sweep_runs_by_seed(tmp_path)
    first = {(r.data.params["model.depth"], r.data.params["seed"]): r
             for r in client.search_runs([parent.info.experiment_id])
             if r.info.run_id != parent.info.run_id}
    assert set(first) == {("1", "42"), ("1", "43")}
    result = run_cli(*args, f"sweep_id={parent.info.run_id}", output_dir=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    after = {(r.data.params["model.depth"], r.data.params["seed"]): r
             for r in client.search_runs([parent.info.experiment_id])
             if r.info.run_id != parent.info.run_id}
    assert len(after) == 6 and all(r.info.status == "FINISHED" for r in after.values())
    assert after[("1", "42")].info.end_time == first[("1", "42")].info.end_time  # skipped
    killed = after[("1", "43")]
    assert killed.info.run_id == first[("1", "43")].info.run_id
    assert killed.data.tags["resumed_from"].endswith("last.ckpt")
    assert len(client.get_metric_history(killed.info.run_id, "val/loss")) == 2


def _sweep_runs_by_seed(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("seq2seq-reverse").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("role") == "sweep"]
    return client, parent, [r for r in runs if r is not parent]


def test_seeds_auto_adds_the_planned_seeds_only_where_a_comparison_is_undecided(tmp_path):
    """``seeds=auto`` (hydra/sweeper=replicates): a pilot of 3 seeds per candidate, then the
    seeds :func:`plan_seeds` asks for from the pilot's validation scores, with the next seeds
    (45, 46, ...), in one more round of jobs; the summary says what that saved."""
    from pipeline.search.replicates import plan_seeds

    result = run_cli("-m", *TINY, "optimizer.lr=0.003,0.0025,0.00001", "seeds=auto",
                     "data.train_size=512", "trainer.max_epochs=3",
                     "hydra/sweeper=replicates", "hydra.sweeper.max_seeds=8",
                     "monitor=val/loss", "min_effect=0.12", "ensemble=false",
                     output_dir=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("seq2seq-reverse").experiment_id])
    children = [r for r in runs if r.data.tags.get("role") != "sweep"]
    seeds: dict[str, list[int]] = {}
    pilot: dict[str, list[float]] = {}
    for r in children:
        name, seed = r.data.tags["candidate_name"], int(r.data.params["seed"])
        seeds.setdefault(name, []).append(seed)
        if seed < 45:
            pilot.setdefault(name, []).append(r.data.metrics["best/val/loss"])
    plan = plan_seeds(pilot, "min", max_seeds=8, min_effect=0.12)
    assert {n: sorted(s) for n, s in seeds.items()} == {
        n: list(range(42, 42 + plan.target[n])) for n in plan.target}
    assert plan.added  # this setting is decidable within 8 seeds for at least one pair
    assert len(plan.added) < len(plan.target)  # and decided from the pilot for another
    sweep_dir = next((tmp_path / "sweeps").iterdir())
    assert (f"seeds=auto: 3 seeds per candidate, then up to 8 where the comparison with the "
            f"best on val/loss was undecided and decidable: {len(children)} runs, against "
            f"3 x 8 = 24 with 8 seeds each ({24 - len(children)} saved).") \
        in (sweep_dir / "summary.md").read_text()

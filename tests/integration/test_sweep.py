"""A real ``python -m pipeline.train -m`` multirun into a temporary MLflow store."""

import csv

from mlflow import MlflowClient

from tests.conftest import TINY, run_cli


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

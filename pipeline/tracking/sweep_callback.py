"""The Hydra callback that gives every multirun one MLflow parent run and a summary."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from hydra.experimental.callback import Callback
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf

from pipeline.tracking import plots
from pipeline.tracking.mlflow_run import (
    PARENT_RUN_FILE,
    ensure_store,
    override_key,
    override_values,
)

log = logging.getLogger(__name__)


def get_or_create_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The experiment's id, creating it (and the store) on first use."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


def child_runs(client: MlflowClient, experiment_id: str, parent_id: str) -> list[Run]:
    """Every run whose ``mlflow.parentRunId`` is ``parent_id``, but attempts that a resumed
    sweep ran again (tagged ``superseded_by``)."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
        max_results=10000,
    )
    return [r for r in runs if "superseded_by" not in r.data.tags]


def swept_values(run: Run, keys: list[str]) -> dict[str, str | None]:
    """The value of each swept key in this child: from its override string (which also
    holds config-group choices such as ``arch=cho``), else from its params."""
    overrides = override_values(run.data.tags.get("overrides", "").split())
    return {key: overrides.get(key, run.data.params.get(key)) for key in keys}


def resumable_parent(client: MlflowClient, run_id: str, experiment_id: str) -> Run:
    """The sweep parent run ``sweep_id`` names, or exit with one line saying what is wrong
    (Hydra turns a callback's exception into a warning and would sweep on regardless)."""
    try:
        run = client.get_run(run_id)
    except MlflowException:
        run = None
    if run is None or run.data.tags.get("role") != "sweep" \
            or run.info.experiment_id != experiment_id:
        log.error("sweep_id=%r is invalid: the run id of a sweep's parent run in this "
                  "experiment (the `sweep ...` runs in the MLflow UI)", run_id)
        raise SystemExit(2)
    return run


def summary_table(runs: list[Run]) -> tuple[pd.DataFrame, str, str]:
    """One row per child (overrides, status, val/test metrics), best first by its monitor."""
    rows = []
    for run in runs:
        row: dict[str, Any] = {
            "run": run.info.run_name, "run_id": run.info.run_id, "status": run.info.status,
            "overrides": run.data.tags.get("overrides", ""),
        }
        row.update({k: v for k, v in sorted(run.data.metrics.items())
                    if k.startswith(("val/", "test/"))})
        rows.append(row)
    tags = runs[0].data.tags if runs else {}
    metric = tags.get("monitor", "val/seq_acc")
    mode = tags.get("monitor_mode", "max")
    table = pd.DataFrame(rows)
    if metric in table:
        table = table.sort_values(metric, ascending=mode == "min", na_position="last")
    return table.reset_index(drop=True), metric, mode


class MLflowSweepCallback(Callback):
    """``on_multirun_start`` creates the store, the experiment and the parent run once,
    before any job starts (so parallel jobs never race to create them); every job finds
    the parent's id in the sweep folder. With ``sweep_id=<parent run id>`` it reopens that
    parent instead: each job then skips a finished earlier attempt of its config or
    continues an interrupted one from its checkpoint (``pipeline.train``).
    ``on_multirun_end`` writes ``summary.csv`` and ``summary.md``, plots the swept metric
    per child and accuracy by input length per child, logs the best child's metrics to the
    parent, registers its model with the alias ``champion``, and closes the parent (FAILED
    if any job failed)."""

    failed_jobs = 0  # of the last sweep in this process: read by ``pipeline.train``

    def __init__(self, tracking_uri: str, experiment_name: str, artifact_location: str | None):
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.artifact_location = artifact_location
        self.parent_id: str | None = None
        self.experiment_id: str | None = None
        self.swept: list[str] = []

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        ensure_store(self.tracking_uri)
        client = MlflowClient(self.tracking_uri)
        self.experiment_id = get_or_create_experiment(
            client, self.experiment_name, self.artifact_location
        )
        sweep_dir = Path(config.hydra.sweep.dir)
        params = config.hydra.sweeper.get("params")
        grid = OmegaConf.to_container(params, resolve=True) if params else {}
        overrides = [o for o in OmegaConf.to_container(config.hydra.overrides.task)
                     if override_key(o) != "sweep_id"]
        swept = {key: str(values) for key, values in grid.items()}
        swept.update({key: values for key, values in override_values(overrides).items()
                      if "," in values})
        resume = config.get("sweep_id")
        if resume:
            self.parent_id = resumable_parent(client, resume, self.experiment_id).info.run_id
            client.update_run(self.parent_id, status="RUNNING")
            client.set_tag(self.parent_id, "resumed_in", str(sweep_dir))
        else:
            self.parent_id = client.create_run(
                self.experiment_id, run_name=f"sweep {sweep_dir.name}",
                tags={"sweep_dir": str(sweep_dir), "overrides": " ".join(overrides)[:5000],
                      "role": "sweep"},
            ).info.run_id
            for key, values in swept.items():
                client.log_param(self.parent_id, key, values)
        self.swept = list(swept)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_RUN_FILE).write_text(json.dumps(
            {"run_id": self.parent_id, "experiment_id": self.experiment_id,
             "swept": self.swept, "resume": bool(resume)}
        ))
        log.info("MLflow parent run %s in %s%s", self.parent_id, self.tracking_uri,
                 " (resumed)" if resume else "")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.parent_id is None:
            return
        client = MlflowClient(self.tracking_uri)
        runs = child_runs(client, self.experiment_id, self.parent_id)
        by_id = {r.info.run_id: r for r in runs}
        sweep_dir = Path(config.hydra.sweep.dir)
        table, metric, _ = summary_table(runs)
        (sweep_dir / "summary.csv").write_text(table.to_csv(index=False))
        (sweep_dir / "summary.md").write_text(table.to_markdown(index=False) + "\n")
        for name in ("summary.csv", "summary.md"):
            client.log_artifact(self.parent_id, str(sweep_dir / name))
        self._log_plots(client, by_id, table, metric)
        finished = table[table.status == "FINISHED"] if len(table) else table
        if len(finished) and metric in finished:
            best = finished.iloc[0]
            client.set_tag(self.parent_id, "best_run_id", best.run_id)
            for key, value in best.items():
                if key.startswith(("val/", "test/")) and pd.notna(value):
                    client.log_metric(self.parent_id, f"best/{key}", float(value))
            self._register(client, by_id[best.run_id])
        failed = int((table.status != "FINISHED").sum()) if len(table) else 0
        MLflowSweepCallback.failed_jobs = failed
        client.set_tag(self.parent_id, "failed_jobs", str(failed))
        client.set_terminated(self.parent_id, "FAILED" if failed else "FINISHED")
        log.info("Sweep summary (%d runs, %d failed): %s", len(table), failed,
                 sweep_dir / "summary.md")

    def _log_plots(self, client: MlflowClient, by_id: dict[str, Run], table, metric: str) -> None:
        values = [swept_values(by_id[run_id], self.swept) for run_id in table.run_id]
        for key in self.swept:
            table[key] = [v[key] for v in values]
        fig = plots.grid_bars(table, metric, self.swept or ["run"])
        client.log_figure(self.parent_id, fig, "plots/grid.png")
        plots.plt.close(fig)
        curves = {r.info.run_name: plots.bucket_curves(r.data.metrics) for r in by_id.values()}
        if any(len(c) for c in curves.values()):
            fig = plots.accuracy_by_length(curves)
            client.log_figure(self.parent_id, fig, "plots/accuracy_by_length.png")
            plots.plt.close(fig)

    def _register(self, client: MlflowClient, best: Run) -> None:
        """Register the best child's model under ``<experiment>`` with alias ``champion``."""
        uri = best.data.tags.get("model_uri")
        if not uri:
            return
        name = self.experiment_name
        mlflow.set_tracking_uri(self.tracking_uri)
        version = mlflow.register_model(uri, name, tags={"sweep_run_id": self.parent_id})
        client.set_registered_model_alias(name, "champion", version.version)
        client.set_tag(self.parent_id, "champion", f"models:/{name}@champion")

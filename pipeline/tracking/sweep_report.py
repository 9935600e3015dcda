"""The sweep parent's report: the summary table, its plots and the champion."""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run

from pipeline.tracking import plots
from pipeline.tracking.naming import override_values


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


def swept_values(run: Run, keys: list[str]) -> dict[str, str | None]:
    """The value of each swept key in this child: from its override string (which also
    holds config-group choices such as ``model=cho``), else from its params."""
    overrides = override_values(run.data.tags.get("overrides", "").split())
    return {key: overrides.get(key, run.data.params.get(key)) for key in keys}


def log_plots(client: MlflowClient, parent_id: str, runs: list[Run], table: pd.DataFrame,
              metric: str, swept: list[str]) -> None:
    """``plots/grid.png`` (the metric per child) and ``plots/accuracy_by_length.png``."""
    if not len(table):
        return
    by_id = {r.info.run_id: r for r in runs}
    values = [swept_values(by_id[run_id], swept) for run_id in table.run_id]
    for key in swept:
        table[key] = [v[key] for v in values]
    fig = plots.grid_bars(table, metric, swept or ["run"])
    client.log_figure(parent_id, fig, "plots/grid.png")
    plots.plt.close(fig)
    curves = {r.info.run_name: plots.bucket_curves(r.data.metrics) for r in runs}
    if any(len(c) for c in curves.values()):
        fig = plots.accuracy_by_length(curves)
        client.log_figure(parent_id, fig, "plots/accuracy_by_length.png")
        plots.plt.close(fig)


def register_champion(tracking_uri: str, parent_id: str, name: str, best: Run) -> None:
    """Register the best child's model under ``name`` with the alias ``champion``."""
    uri = best.data.tags.get("model_uri")
    if not uri:
        return
    client = MlflowClient(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    version = mlflow.register_model(uri, name, tags={"sweep_run_id": parent_id})
    client.set_registered_model_alias(name, "champion", version.version)
    client.set_tag(parent_id, "champion", f"models:/{name}@champion")


def report(tracking_uri: str, parent_id: str, experiment_name: str, runs: list[Run],
           swept: list[str], sweep_dir) -> pd.DataFrame:
    """Write and log ``summary.csv``/``summary.md``, the plots, the best child's metrics as
    ``best/...`` and its model as the champion. Returns the summary table."""
    client = MlflowClient(tracking_uri)
    table, metric, _ = summary_table(runs)
    (sweep_dir / "summary.csv").write_text(table.to_csv(index=False))
    (sweep_dir / "summary.md").write_text(table.to_markdown(index=False) + "\n")
    for name in ("summary.csv", "summary.md"):
        client.log_artifact(parent_id, str(sweep_dir / name))
    log_plots(client, parent_id, runs, table, metric, swept)
    finished = table[table.status == "FINISHED"] if len(table) else table
    if len(finished) and metric in finished:
        best = finished.iloc[0]
        client.set_tag(parent_id, "best_run_id", best.run_id)
        for key, value in best.items():
            if key.startswith(("val/", "test/")) and pd.notna(value):
                client.log_metric(parent_id, f"best/{key}", float(value))
        by_id = {r.info.run_id: r for r in runs}
        register_champion(tracking_uri, parent_id, experiment_name, by_id[best.run_id])
    return table

"""The sweep's champion: the best candidate's best replicate, registered in MLflow's model
registry under the experiment's name with the alias ``champion``."""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.entities import Run

from pipeline.tracking import registry


def at_best(run: Run, metric: str) -> float | None:
    """``run``'s ``metric`` at its best checkpoint (``best/<metric>``, logged for the
    monitored metric), else its last logged value, else None."""
    metrics = run.data.metrics
    return metrics.get(f"best/{metric}", metrics.get(metric))


def eligible(runs: list[Run], metric: str) -> list[Run]:
    """The runs that logged a model and a value of ``metric``."""
    return [r for r in runs if r.data.tags.get("model_uri") and at_best(r, metric) is not None]


def best_replicate(runs: list[Run], metric: str, mode: str) -> Run | None:
    """Of ``runs`` that logged a model, the one with the best ``metric`` (validation)."""
    candidates = eligible(runs, metric)
    if not candidates:
        return None
    return (max if mode == "max" else min)(candidates, key=lambda r: at_best(r, metric))


def register(tracking_uri: str, parent_id: str, name: str, candidate: str, runs: list[Run],
             metric: str, mode: str) -> None:
    """Register the replicate of the best candidate (named ``candidate``, its ``runs``) with
    the best ``metric`` (validation) under ``name`` with the alias ``champion``; the parent's tags
    say which and why."""
    pick = best_replicate(runs, metric, mode)
    if pick is None:
        return
    client = MlflowClient(tracking_uri)
    version = registry.register(tracking_uri, pick.data.tags["model_uri"], name,
                                tags={"sweep_run_id": parent_id, "run_id": pick.info.run_id})
    client.set_registered_model_alias(name, "champion", version.version)
    client.set_tag(parent_id, "champion", f"models:/{name}@champion")
    client.set_tag(parent_id, "champion_run_id", pick.info.run_id)
    client.set_tag(parent_id, "champion_reason", (
        f"the replicate with the best {metric} ({at_best(pick, metric):.4g}) of "
        f"{len(eligible(runs, metric))} in the best candidate, {candidate}, best by mean "
        f"{metric}"))

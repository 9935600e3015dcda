"""The ensemble champion: the replicates of a sweep's best candidate (``ensemble.top`` best
candidates) decoded as one model (:class:`pipeline.models.ensemble.Ensemble`), validated and
tested by the same module, metrics and report as any run, and logged as a run of its own
under the sweep's parent (tags ``role=ensemble``, ``members``). Its model, a pyfunc model
like any other holding every member's weights, is registered under the experiment's name
and becomes the ``champion`` where it is better on validation than the best replicate.

The sweep's report calls it (``conf/hydra/default.yaml`` gives it to the sweep callback)
once the candidates are ranked and the best replicate registered; ``ensemble=false`` turns
it off. Anything that stops it costs the ensemble (its run ends FAILED, one line says why),
never the sweep.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from mlflow import MlflowClient
from omegaconf import DictConfig, OmegaConf, open_dict

from pipeline import stats
from pipeline.build import fill_monitor
from pipeline.data.tasks import TASKS
from pipeline.logs import one_console
from pipeline.module import Seq2SeqModule
from pipeline.report import Report
from pipeline.serving import load_translator
from pipeline.tracking import registry
from pipeline.tracking.champion import at_best, best_replicate
from pipeline.tracking.sweep_report import ALPHA, Candidate, example_scores

log = logging.getLogger(__name__)
ENSEMBLE_TARGET = "pipeline.models.ensemble.Ensemble"


@dataclass
class EnsembleOutcome:
    """The ensemble's run, its scores beside the best replicate's and the candidate's mean,
    the paired test over the test examples, and whether it became the champion."""

    run_id: str
    members: list[str]
    candidates: list[str]
    metric: str
    metrics: dict[str, float]
    best_replicate: tuple[str, float | None, float | None]  # run id, validation, test
    candidate_mean: float | None  # the best candidate's mean test score
    p_paired: float | None
    model_uri: str | None
    champion: bool
    sentences: list[str] = field(default_factory=list)

    @property
    def test_metric(self) -> str:
        return self.metric.replace("val/", "test/", 1)

    def summary(self) -> str:
        """One line: its test score against the best replicate's, and its model."""
        test, best_test = self.metrics.get(self.test_metric), self.best_replicate[2]
        p = f", paired {stats.p_text(self.p_paired)}" if self.p_paired is not None else ""
        return (f"{len(self.members)} replicates: {self.test_metric} {_number(test)} (best "
                f"replicate {_number(best_test)}{p}); {self.model_uri}"
                + (", the champion" if self.champion else ""))


def _number(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


class EnsembleChampion:
    """``EnsembleChampion(top=1)(...)``: see the module docstring."""

    def __init__(self, top: int = 1):
        self.top = int(top)

    def __call__(self, tracking_uri: str, parent_id: str, experiment_name: str,
                 ranked: list[Candidate], metric: str, mode: str, sweep_dir: Path
                 ) -> EnsembleOutcome | None:
        chosen = [c for c in ranked[: self.top] if c.finished]
        members = [r for c in chosen for r in c.finished if r.data.tags.get("model_uri")]
        if len(members) < 2:
            log.info("no ensemble: the best candidates have %d replicate(s) with a model",
                     len(members))
            return None
        task = members[0].data.tags.get("task")
        if task not in TASKS or TASKS[task].kind != "tokens":
            log.info("no ensemble: %s is not a token task", task)
            return None
        one_console()  # Lightning's own console handler, in the sweep's process
        client = MlflowClient(tracking_uri)
        cfg = member_config(client, members[0])
        if cfg is None:
            log.error("no ensemble: the config of run %s is neither in its job folder nor "
                      "among its artifacts", members[0].info.run_id)
            return None
        run = client.create_run(
            members[0].info.experiment_id,
            run_name=f"ensemble of {len(members)}: {', '.join(c.name for c in chosen)}"[:250],
            tags={"mlflow.parentRunId": parent_id, "role": "ensemble", "ensemble": "true",
                  "members": ",".join(r.info.run_id for r in members),
                  "candidate_name": "ensemble: " + " | ".join(c.name for c in chosen),
                  "monitor": metric, "monitor_mode": mode, "task": task})
        run_id = run.info.run_id
        try:
            outcome = self._evaluate(tracking_uri, cfg, run_id, parent_id, experiment_name,
                                     chosen, members, metric, mode, sweep_dir)
        except Exception as err:
            client.set_tag(run_id, "error", f"{type(err).__name__}: {err}"[:5000])
            client.set_terminated(run_id, "FAILED")
            log.error("the ensemble failed, the sweep goes on: %s: %s", type(err).__name__,
                      err)
            return None
        client.set_terminated(run_id, "FINISHED")
        return outcome

    def _evaluate(self, tracking_uri: str, cfg: DictConfig, run_id: str, parent_id: str,
                  experiment_name: str, chosen: list[Candidate], members: list,
                  metric: str, mode: str, sweep_dir: Path) -> EnsembleOutcome:
        client = MlflowClient(tracking_uri)
        datamodule = instantiate(cfg.data)
        datamodule.prepare_data()
        datamodule.setup()
        translators = [load_translator(r.data.tags["model_uri"]) for r in members]
        for t in translators:
            if (t.source.vocab.itos, t.target.vocab.itos) != (
                    datamodule.vocabs[0].itos, datamodule.vocabs[1].itos):
                raise ValueError("the members' vocabularies differ from the data's")
        module = Seq2SeqModule.from_config(cfg, datamodule.spec)
        module.hparams.net = {"_target_": ENSEMBLE_TARGET,
                              "members": [t.settings for t in translators]}
        module.net = instantiate(module.hparams.net, _convert_="all")
        for net, t in zip(module.net.members, translators, strict=True):
            net.load_state_dict(t.net.state_dict())
        trainer = L.Trainer(
            accelerator="cpu", devices=1, logger=instantiate(cfg.logger, run_id=run_id),
            callbacks=[Report()], enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, default_root_dir=str(sweep_dir / "ensemble"))
        trainer.validate(module, datamodule=datamodule, verbose=False)
        trainer.test(module, datamodule=datamodule, verbose=False)
        metrics = dict(client.get_run(run_id).data.metrics)
        if metric in metrics:
            client.log_metric(run_id, f"best/{metric}", metrics[metric])
        return self._compare(tracking_uri, run_id, parent_id, experiment_name, chosen,
                             members, metric, mode, metrics)

    def _compare(self, tracking_uri: str, run_id: str, parent_id: str, experiment_name: str,
                 chosen: list[Candidate], members: list, metric: str, mode: str,
                 metrics: dict[str, float]) -> EnsembleOutcome:
        """The ensemble against the best replicate: scores, the paired test over the test
        examples, and the champion alias where it is better on validation."""
        client = MlflowClient(tracking_uri)
        test_metric = metric.replace("val/", "test/", 1)
        sign = 1 if mode == "max" else -1
        best = best_replicate(members, metric, mode) or members[0]
        run = client.get_run(run_id)
        own, theirs = example_scores(client, run), example_scores(client, best)
        p = None
        if own is not None and theirs is not None and own.index.equals(theirs.index):
            p = stats.paired_permutation(own.to_numpy(), theirs.to_numpy())
        model_uri = run.data.tags.get("model_uri")
        version = registry.register(tracking_uri, model_uri, experiment_name,
                                    tags={"sweep_run_id": parent_id, "run_id": run_id,
                                          "ensemble": "true"}) if model_uri else None
        value, theirs_value = metrics.get(metric), at_best(best, metric)
        crowned = (version is not None and value is not None and theirs_value is not None
                   and sign * value > sign * theirs_value)
        if crowned:
            client.set_registered_model_alias(experiment_name, "champion", version.version)
            client.set_tag(parent_id, "champion_run_id", run_id)
            client.set_tag(parent_id, "champion_reason", (
                f"the ensemble of the {len(members)} replicates of "
                f"{', '.join(c.name for c in chosen)}: {metric} {value:.4g} against the best "
                f"replicate's {theirs_value:.4g}"))
        scores = chosen[0].values(test_metric)
        outcome = EnsembleOutcome(
            run_id, [r.info.run_id for r in members], [c.name for c in chosen], metric,
            metrics, (best.info.run_id, theirs_value, best.data.metrics.get(test_metric)),
            sum(scores) / len(scores) if scores else None, p,
            f"models:/{experiment_name}/{version.version}" if version else None, crowned)
        outcome.sentences = in_words(outcome)
        return outcome


def in_words(o: EnsembleOutcome) -> list[str]:
    """The ensemble's lines in the summary."""
    test = o.metrics.get(o.test_metric)
    _, best_val, best_test = o.best_replicate
    num = _number
    evidence = (f"paired over the test examples {stats.p_text(o.p_paired)}"
                if o.p_paired is not None else "no paired test: the examples' scores differ")
    differs = o.p_paired is not None and o.p_paired < ALPHA
    verdict = "differs significantly from" if differs else "does not differ significantly from"
    return [
        f"The ensemble of the {len(o.members)} replicates of {', '.join(o.candidates)}: "
        f"{o.test_metric} {num(test)}, against the best replicate's {num(best_test)} and the "
        f"candidate's mean {num(o.candidate_mean)}; it {verdict} the best replicate "
        f"({evidence}).",
        f"On validation the ensemble has {o.metric} {num(o.metrics.get(o.metric))}, the best "
        f"replicate {num(best_val)}: "
        + (f"the ensemble is the champion ({o.model_uri})." if o.champion
           else f"the best replicate stays the champion (the ensemble: {o.model_uri})."),
    ]


def member_config(client: MlflowClient, run) -> DictConfig | None:
    """The config a member run trained with: its job folder's ``.hydra/config.yaml`` (a
    replicate's folder is ``<job>/seed<N>``), else its ``hydra/config.yaml`` artifact; with
    its monitor filled as the run had it."""
    job_dir = Path(run.data.tags.get("job_dir", ""))
    found = next((p for p in (job_dir / ".hydra/config.yaml",
                              job_dir.parent / ".hydra/config.yaml") if p.is_file()), None)
    if found is not None:
        cfg = OmegaConf.load(found)
    else:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                cfg = OmegaConf.load(client.download_artifacts(
                    run.info.run_id, "hydra/config.yaml", tmp))
        except Exception:
            return None
    with open_dict(cfg):
        cfg.paths.run_dir = str(job_dir)
    fill_monitor(cfg)
    return cfg

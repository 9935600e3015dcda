"""The ensemble champion of a real sweep: the best candidate's replicates as one model, a run
of its own under the parent, registered, the champion where better on validation; its
pyfunc model predicts as the members decoded together, refuses bad input like a single
model and serves through ``mlflow models serve``."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.models.ensemble import Ensemble
from tests.helpers import TINY, run_cli
from tests.helpers.serving import served


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("ensemble")
    done = run_cli("-m", *TINY, "seeds=2", "model.depth=1,2", "trainer.max_epochs=2",
                   output_dir=out, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    uri = f"sqlite:///{out}/mlflow.db"
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("seq2seq-reverse").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("role") == "sweep"]
    (ensemble,) = [r for r in runs if r.data.tags.get("role") == "ensemble"]
    return {"out": out, "uri": uri, "client": client, "parent": parent, "ensemble": ensemble,
            "runs": runs, "stdout": done.stdout}


def test_the_best_candidates_replicates_are_one_run_under_the_parent(sweep):
    client, parent, ensemble = sweep["client"], sweep["parent"], sweep["ensemble"]
    assert ensemble.info.status == "FINISHED"
    assert ensemble.data.tags["mlflow.parentRunId"] == parent.info.run_id
    best = parent.data.tags["best_candidate"]
    members = [r for r in sweep["runs"] if r.data.tags.get("candidate_name") == best]
    assert sorted(ensemble.data.tags["members"].split(",")) == sorted(
        r.info.run_id for r in members) and len(members) == 2
    assert {"val/seq_acc", "test/seq_acc", "test/loss", "best/val/seq_acc"} <= set(
        ensemble.data.metrics)
    # registered, and the champion exactly where it is better on validation
    (version,) = [v for v in client.search_model_versions("name = 'seq2seq-reverse'")
                  if v.tags.get("run_id") == ensemble.info.run_id]
    champion = client.get_model_version_by_alias("seq2seq-reverse", "champion")
    best_replicate = max(m.data.metrics["best/val/seq_acc"] for m in members)
    if ensemble.data.metrics["val/seq_acc"] > best_replicate:
        assert champion.version == version.version
    else:
        assert champion.tags["run_id"] in {m.info.run_id for m in members}
    summary = (sweep["out"] / "sweeps").glob("*/summary.md")
    text = next(summary).read_text()
    assert "The ensemble of the 2 replicates of " in text and "paired over the test" in text
    assert any(ln.startswith("ensemble: 2 replicates: test/seq_acc ")
               for ln in sweep["stdout"].splitlines())


def test_the_ensemble_model_predicts_as_its_members_decoded_together(sweep):
    mlflow.set_tracking_uri(sweep["uri"])
    model = mlflow.pyfunc.load_model(sweep["ensemble"].data.tags["model_uri"])
    texts = ["1 2 3", "4 4 1 2", "5"]
    predicted = model.predict(pd.DataFrame({"source": texts}))["prediction"].tolist()
    members = [mlflow.pyfunc.load_model(
        sweep["client"].get_run(i).data.tags["model_uri"]).unwrap_python_model().translator
        for i in sweep["ensemble"].data.tags["members"].split(",")]
    together = members[0]
    together.net = Ensemble([m.net for m in members])
    assert predicted == together.translate(texts)
    assert isinstance(model.unwrap_python_model().translator.net, Ensemble)
    for bad in (pd.DataFrame({"text": ["1 2"]}), pd.DataFrame({"source": ["1 x"]}),
                pd.DataFrame({"source": [""]})):
        with pytest.raises(MlflowException):
            model.predict(bad)


def test_the_ensemble_serves_like_any_model(sweep):
    with served(sweep["ensemble"].data.tags["model_uri"], sweep["uri"]) as post:
        status, body = post({"dataframe_records": [{"source": "1 2 3"}],
                             "params": {"beam_size": 3}})
        assert status == 200 and isinstance(body["predictions"][0]["prediction"], str)
        status, body = post({"dataframe_records": [{"source": "1 x"}]})
        assert 400 <= status < 500 and "vocabulary" in body["message"]

"""One training, in-process on a tiny config: metrics, MLflow run, model round trip."""

import math

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from pipeline.module import Seq2SeqModule
from pipeline.train import train
from tests.helpers import ROOT, TINY

METRICS = ["train/loss_epoch", "val/loss", "val/token_acc", "val/seq_acc",
           "test/loss", "test/token_acc", "test/seq_acc"]


def test_tiny_training_is_tracked_and_round_trips(compose_cfg, tmp_path):
    cfg = compose_cfg(*TINY, "model.depth=[1,2]", "tags=[smoke]")
    metrics = train(cfg)
    assert 0.0 <= metrics["test/seq_acc"] <= 1.0

    client = MlflowClient(cfg.logger.tracking_uri)
    experiment = client.get_experiment_by_name("seq2seq-reverse")
    assert experiment.artifact_location.startswith(f"file://{tmp_path}")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["model.depth"] == "[1, 2]"
    assert params["model.attention"] == "additive"
    assert params["data.max_len"] == "5"
    assert params["trainer.max_epochs"] == "1"
    assert set(METRICS) <= set(run.data.metrics)
    assert run.data.metrics["test/seq_acc"] == pytest.approx(metrics["test/seq_acc"])
    assert run.data.tags["tag.smoke"] == "true"
    assert "model.depth=[1,2]" in run.info.run_name  # built from the overrides
    assert run.data.tags["variant"] == "seq2seq-lstm-d1x2-bi-nobridge-peek-additive"

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "hydra" in artifacts or not (tmp_path / "run" / ".hydra").exists()
    # MLFlowLogger(log_model=True) logs each checkpoint under its stem with its aliases; a
    # finished run keeps each file once, in its artifacts (the run folder's copies are gone).
    assert not list((tmp_path / "run").glob("checkpoints/*.ckpt"))
    (stem,) = [a for a in artifacts if a.startswith("epoch")]
    assert "last" not in artifacts  # only to resume from the run folder
    local = client.download_artifacts(run.info.run_id, stem, str(tmp_path / "dl"))
    assert "best" in (tmp_path / "dl" / stem / "aliases.txt").read_text()
    ckpt = tmp_path / "dl" / stem / f"{stem}.ckpt"
    assert ckpt.exists(), local

    # The logged model and the best checkpoint decode exactly alike.
    from_ckpt = Seq2SeqModule.load_from_checkpoint(ckpt, weights_only=False).net.eval()
    mlflow.set_tracking_uri(cfg.logger.tracking_uri)
    (logged,) = mlflow.search_logged_models(
        experiment_ids=[experiment.experiment_id], output_format="list"
    )
    # The pyfunc model (texts in and out) holds the same network.
    from_mlflow = mlflow.pyfunc.load_model(logged.model_uri).unwrap_python_model().translator.net
    src = torch.randint(4, 10, (5, 5))
    lengths = torch.tensor([5, 4, 3, 2, 1])
    for beam in (1, 3):
        a = from_ckpt.generate(src, lengths, max_len=7, beam_size=beam)
        b = from_mlflow.generate(src, lengths, max_len=7, beam_size=beam)
        assert torch.equal(a.sequences, b.sequences)


EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_trains_end_to_end(compose_cfg, experiment):
    """Each recipe of conf/experiment (every task among them), trained a few steps on tiny
    data with its own model, schedule and callbacks: its metrics reach MLflow and its run
    finishes."""
    cfg = compose_cfg(f"experiment={experiment}", "debug=fast", "data.batch_size=32")
    metrics = train(cfg)
    expected = {
        "vectors": ["test/mse", "test/mae"],
        "co2": ["test/mse", "test/mase", "test/mase_naive"],
        "g2p": ["test/seq_acc", "test/per", "test/wer"],
        "files": ["test/seq_acc", "test/bleu", "test/chrf", "test/cer"],
    }.get(cfg.data.task, ["test/seq_acc", "test/token_acc"])
    assert set(expected) <= set(metrics)
    assert all(math.isfinite(metrics[k]) for k in expected)
    if "test/seq_acc" in expected:  # and per input-length bucket: about 5, or of eval's width
        buckets = [k.rsplit("_", 1)[1] for k in metrics if k.startswith("test/seq_acc/len_")]
        if cfg.eval.bucket_width:
            assert all(int(b[3:]) - int(b[:2]) + 1 == cfg.eval.bucket_width for b in buckets)
        fewest = 2 if cfg.data.task == "files" else 3  # numbers: 1 to 3 digits
        assert fewest <= len(buckets) <= 8, buckets  # lengths: 40 symbols in buckets of 5

"""``python -m pipeline.predict`` as a user runs it: predictions, and one line for a model
that does not exist, an empty input or symbols outside the model's vocabulary."""

import os
import subprocess
import sys

import pytest

from pipeline.train import train
from tests.helpers import ROOT, TINY

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A tiny trained model, registered as ``tiny@champion`` (vocabulary 0-5)."""
    import mlflow
    from mlflow import MlflowClient

    from tests.helpers import compose_config

    out = tmp_path_factory.mktemp("predict")
    cfg = compose_config(out, *TINY)
    train(cfg)
    client = MlflowClient(cfg.logger.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("seq2seq-reverse").experiment_id])
    mlflow.set_tracking_uri(cfg.logger.tracking_uri)
    version = mlflow.register_model(run.data.tags["model_uri"], "tiny")
    client.set_registered_model_alias("tiny", "champion", version.version)
    return out


def predict(store, *args):
    return subprocess.run([sys.executable, "-m", "pipeline.predict", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SEQ2SEQ_OUTPUT_DIR": str(store)})


def one_line(result) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    (line,) = [ln for ln in (result.stdout + result.stderr).splitlines() if "is invalid" in ln]
    return line


def test_known_symbols_are_decoded(store):
    result = predict(store, "model_uri=models:/tiny@champion", 'inputs=["1 2 3", "4 0"]')
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("1 2 3\t") and lines[1].startswith("4 0\t")


def test_unknown_symbols_are_named_or_mapped_on_purpose(store):
    line = one_line(predict(store, "model_uri=models:/tiny@champion", 'inputs=["1 2 x 99"]'))
    assert "outside the model's vocabulary: x 99" in line and "it knows: 0 1 2 3 4 5" in line
    mapped = predict(store, "model_uri=models:/tiny@champion", 'inputs=["1 2 x 99"]',
                     "unknown=unk")
    assert mapped.returncode == 0 and mapped.stdout.startswith("1 2 x 99\t")


def test_an_empty_input_is_refused(store):
    assert "input 1 of 1 is empty" in one_line(predict(store, "model_uri=models:/tiny@champion",
                                                       'inputs=[""]'))
    assert "no inputs" in one_line(predict(store, "model_uri=models:/tiny@champion"))


def test_a_model_that_does_not_exist_lists_the_registered_ones(store):
    line = one_line(predict(store, "model_uri=models:/nope@champion", 'inputs=["1"]'))
    assert "model_uri='models:/nope@champion' is invalid" in line
    assert "tiny (aliases: champion; versions 1-1)" in line


def test_a_vector_model_is_refused_in_one_line(tmp_path):
    """A vector task's model (PyTorch, vectors in and out) is not a text model: one line
    names it, exit status 2."""
    from mlflow import MlflowClient

    from tests.helpers import compose_config

    cfg = compose_config(tmp_path, "data=vectors", "debug=fast")
    train(cfg)
    client = MlflowClient(cfg.logger.tracking_uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    uri = run.data.tags["model_uri"]
    line = one_line(predict(tmp_path, f"model_uri={uri}", 'inputs=["1 2"]'))
    assert f"model_uri='{uri}' is invalid: a token model (texts in, texts out)" in line

"""A user's files end to end: train on TSV files, score texts, predict from a file or
standard input, load the pyfunc model, serve it with ``mlflow models serve``; a bad file,
setting or input stops in one line on stderr and leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline.train import train
from tests.helpers import ROOT, compose_config, run_cli
from tests.helpers.serving import served

EXAMPLE = ROOT / "examples" / "numbers"
FILES = [f"data.{s}={EXAMPLE / f'{s}.tsv'}" for s in ("train", "val", "test")]
TINY_FILES = ["data=files", *FILES, "data.source_tokenizer=chars",
              "data.target_tokenizer=words", "debug=fast", "monitor=val/chrf"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A tiny model of the example files, registered as ``numbers@champion``."""
    import mlflow
    from mlflow import MlflowClient

    out = tmp_path_factory.mktemp("your-data")
    cfg = compose_config(out, *TINY_FILES)
    metrics = train(cfg)
    client = MlflowClient(cfg.logger.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("seq2seq-files").experiment_id])
    mlflow.set_tracking_uri(cfg.logger.tracking_uri)
    version = mlflow.register_model(run.data.tags["model_uri"], "numbers")
    client.set_registered_model_alias("numbers", "champion", version.version)
    return {"out": out, "uri": cfg.logger.tracking_uri, "run": run, "metrics": metrics}


def test_texts_are_scored_and_the_files_logged_as_datasets(store):
    metrics, run = store["metrics"], store["run"]
    for name in ("test/seq_acc", "test/bleu", "test/chrf", "test/cer", "val/chrf"):
        assert name in metrics, sorted(metrics)
    assert 0 <= metrics["test/chrf"] <= 100 and metrics["best/val/chrf"] >= 0
    assert run.data.tags["example_score"] == "chrf"  # the paired test's per-example score
    inputs = {d.dataset.name: d.dataset for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"files-train", "files-val", "files-test"}
    assert json.loads(inputs["files-test"].source)["uri"] == str(EXAMPLE / "test.tsv")
    assert len(inputs["files-test"].digest) == 32


def test_the_pyfunc_model_maps_strings_to_strings(store):
    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(store["uri"])
    model = mlflow.pyfunc.load_model(store["run"].data.tags["model_uri"])
    out = model.predict(pd.DataFrame({"source": ["12", "305", "7"]}))
    assert list(out.columns) == ["prediction"] and len(out) == 3
    assert all(isinstance(p, str) for p in out["prediction"])
    assert model.metadata.signature.inputs.input_names() == ["source"]
    with pytest.raises(MlflowException, match="outside the model's vocabulary: x"):
        model.predict(pd.DataFrame({"source": ["1x"]}))


def predict(store, *args, stdin=None):
    return subprocess.run([sys.executable, "-m", "pipeline.predict",
                           "model_uri=models:/numbers@champion", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SEQ2SEQ_OUTPUT_DIR": str(store["out"])})


def test_predict_reads_a_file_or_standard_input(store, tmp_path):
    path = tmp_path / "inputs.txt"
    path.write_text("12\n305\n7\n")
    from_file = predict(store, f"inputs_file={path}", "eval.beam_size=3")
    from_stdin = predict(store, "inputs_file=-", stdin="12\n305\n7\n")
    for result in (from_file, from_stdin):
        assert result.returncode == 0, result.stderr[-2000:]
        lines = result.stdout.splitlines()
        assert [ln.split("\t")[0] for ln in lines] == ["12", "305", "7"]
    missing = predict(store, f"inputs_file={tmp_path / 'nope.txt'}")
    said = missing.stdout + missing.stderr
    assert missing.returncode == 2 and "Traceback" not in said
    assert "inputs_file: " in said and "nope.txt: cannot be read" in said


def test_a_refused_input_is_one_line_on_stderr_by_its_line_and_leaves_nothing(store, tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("12\n305\n7\u00e41\n40\n", encoding="utf-8")
    log_file = store["out"] / "predict" / "predict.log"
    for args, start in [
        ([f"inputs_file={path}"], f"error: inputs_file: {path}, line 3: the line has symbols "
                                  "outside the model's vocabulary: \u00e4 (it knows: "),
        (['inputs=["12", "1x"]'], "error: inputs='1x' is invalid: input 2 of 2 has symbols "
                                  "outside the model's vocabulary: x (it knows: "),
    ]:
        result = predict(store, *args)
        assert result.returncode == 2 and result.stdout == "", result.stdout
        (line,) = result.stderr.splitlines()
        assert line.startswith(start) and line.endswith("; use unknown=unk to read them as <unk>")
        assert not log_file.exists()
    piped = predict(store, "inputs_file=-", stdin="12\n7\n")
    assert piped.returncode == 0 and len(piped.stdout.splitlines()) == 2
    assert "12\t" not in piped.stderr


def test_the_served_model_answers_and_refuses_bad_requests(store):
    with served("models:/numbers@champion", store["uri"]) as post:
        status, body = post({"dataframe_records": [{"source": "12"}, {"source": "40"}],
                             "params": {"beam_size": 2}})
        assert status == 200 and len(body["predictions"]) == 2
        assert all(isinstance(p["prediction"], str) for p in body["predictions"])
        for bad, words in [({"dataframe_records": [{"text": "12"}]}, "source"),
                           ({"dataframe_records": [{"source": ""}]}, "is empty"),
                           ({"dataframe_records": [{"source": "1x"}]}, "vocabulary: x")]:
            status, body = post(bad)
            assert 400 <= status < 500 and words in body["message"], (status, body)


BAD_INPUTS = {  # what the file holds (None: no file; "dir": a directory), what is said
    "missing": ("train.tsv", None, "{bad}: no such file"),
    "wrong columns": ("train.tsv", "source\ttarget\n12\ttwelve\n13\tthirteen\tthree\n",
                      "{bad}, line 3: 3 fields, expected 2 fields (as on line 1)"),
    "a directory": ("corpus", "dir", "{bad}: a directory, not a file; name a data file, or "
                    "read the folder as a Hugging Face dataset: data.dataset={bad}"),
    "a column named twice": ("train.tsv", "source\ttarget\ttarget\n12\ttwelve\tx\n",
                             "{bad}, line 1: the header names column 'target' twice (columns 2 "
                             "and 3); give every column its own name"),
    "a bad JSON line": ("train.jsonl", '{"source": "1", "target": "one"}\n' * 55
                        + '{"source": "2", "target" "two"}\n',
                        "{bad}, line 56: not valid JSON: Expecting ':' delimiter at column 26; "
                        "every line needs one JSON object"),
}


@pytest.mark.parametrize("problem", [*BAD_INPUTS, "a bad setting"])
def test_a_bad_file_or_setting_stops_in_one_line_and_leaves_nothing(tmp_path, problem):
    """The one line starts with the setting and the reason, names the file and its line, and
    is all that is said: no echo of the overrides, no line of the reading library."""
    name, content, said = BAD_INPUTS.get(problem, ("train.tsv", "source\ttarget\n1\tone\n", ""))
    bad = tmp_path / name
    if content == "dir":
        bad.mkdir()
    elif content is not None:
        bad.write_text(content)
    out = tmp_path / "out"
    extra = ["data.tokenizer=nonsense"] if problem == "a bad setting" else []
    result = run_cli("data=files", f"data.train={bad}", *extra, "debug=fast", output_dir=out)
    assert result.returncode == 2
    line = ("data.tokenizer='nonsense' is invalid: one of chars, words, bpe, unigram"
            if problem == "a bad setting" else "data.train: " + said.format(bad=bad))
    assert (result.stdout + result.stderr).splitlines() == [f"error: {line}"]
    assert not (out / "mlflow.db").exists() and not list(out.glob("data/*"))

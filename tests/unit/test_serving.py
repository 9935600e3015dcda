"""Logged models carry their code, not a pickle of it: the token model is a pyfunc model
from code, the ``pipeline`` package ships with every model, and a model loads and predicts in
a Python that has its requirements but not the project."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
import yaml
from hydra.utils import instantiate
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.config import MAX_BEAM
from pipeline.data.tokenize import TextCodec, tokenizers_from_json
from pipeline.data.vocab import Vocab
from pipeline.decode import Translator
from pipeline.serving import MODELS, SIGNATURE, log_pyfunc_model, log_text_model
from pipeline.tracking import artifacts

NET = dict(_target_="pipeline.models.EncoderDecoder", input_dim=14, output_dim=14,
           hidden_dim=8, attention="additive", peek=True)
REQUIREMENTS = [f"torch=={torch.__version__}", "seq2seq-pipeline==0.1.0"]  # as the report's

# Run with ``python -I`` in an empty folder: the editable install's finder is dropped, so
# ``pipeline`` can only come from the model. Prints one JSON line.
CLEAN_LOAD = r"""
import importlib.metadata as md, importlib.util, json, sys
sys.meta_path[:] = [f for f in sys.meta_path
                    if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path_importer_cache.clear()
assert importlib.util.find_spec("pipeline") is None, "the project is importable here"
import mlflow, pandas as pd
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

flavor, local = sys.argv[1], sys.argv[2]
out = {}
if flavor == "pyfunc":
    model = mlflow.pyfunc.load_model(local)
    frame = model.predict(pd.DataFrame({"source": ["1 2", "3 4 5"]}), params={"beam_size": 2})
    out["columns"], out["predictions"] = list(frame.columns), frame["prediction"].tolist()
    out["translator"] = type(model.unwrap_python_model().translator).__name__
    try:
        model.predict(pd.DataFrame({"source": ["1 x"]}))
    except mlflow.exceptions.MlflowException as err:
        out["refused"] = [err.error_code, err.message]
else:
    import torch
    net = mlflow.pytorch.load_model(local)
    gen = net.generate(torch.tensor([[4, 5, 6]]), torch.tensor([3]), max_len=4)
    out["sequences"] = list(gen.sequences.shape)
import pipeline
out["pipeline"] = pipeline.__file__

# Every distribution the model imported is a requirement, or one of theirs.
with open(f"{local}/requirements.txt") as f:
    covered, todo = set(), [Requirement(r).name for r in f.read().split()]
while todo:
    name = canonicalize_name(todo.pop())
    if name in covered:
        continue
    covered.add(name)
    try:
        todo += [r.name for r in map(Requirement, md.requires(name) or [])
                 if r.marker is None or r.marker.evaluate({"extra": ""})]
    except md.PackageNotFoundError:
        pass
owners = md.packages_distributions()
shipped = {n.split(".")[0] for n, m in list(sys.modules.items())
           if (getattr(m, "__file__", None) or "").startswith(local)}
imported = {n.split(".")[0] for n in list(sys.modules)} - set(sys.stdlib_module_names) - shipped
out["undeclared"] = sorted(m for m in imported if m in owners
                           and not {canonicalize_name(d) for d in owners[m]} & covered)
print(json.dumps(out))
"""


def tiny_translator() -> Translator:
    torch.manual_seed(0)
    source, target = tokenizers_from_json(None)
    vocab = Vocab(list("0123456789"))
    return Translator(instantiate(NET), TextCodec(source, vocab), TextCodec(target, vocab), 6,
                      NET)


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A SQLite store with one run holding a tiny token model, logged while every MLflow log
    record and Python warning is kept; its files downloaded to ``local``."""
    folder = tmp_path_factory.mktemp("serving")
    uri, previous = f"sqlite:///{folder}/mlflow.db", mlflow.get_tracking_uri()
    client = MlflowClient(uri)
    experiment = client.create_experiment("serving", artifact_location=str(folder / "art"))
    run_id = client.create_run(experiment).info.run_id
    handler, logger = Records(), logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    path = list(sys.path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model_uri = log_text_model(uri, run_id, tiny_translator(), REQUIREMENTS,
                                       ["1 2", "3"])
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(folder / "dl")))
    yield {"uri": uri, "run_id": run_id, "model_uri": model_uri, "local": local,
           "records": handler.records, "warnings": caught, "client": client,
           "path_kept": sys.path == path}
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def model(store):
    """The logged token model, loaded here (MLflow's code path off ``sys.path`` after)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "path", list(sys.path))
        yield mlflow.pyfunc.load_model(str(store["local"]))


def test_logging_the_model_pickles_nothing_and_says_nothing_about_pickles(store):
    said = [r.getMessage() for r in store["records"]]
    said += [str(w.message) for w in store["warnings"]]
    assert any(r.name.startswith("mlflow") for r in store["records"])  # the capture works
    assert not [s for s in said if "pickle" in s.lower()], said
    local = store["local"]
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert Path(flavor["model_code_path"]).name == "serving_model.py"
    assert flavor["config"] == {"kind": "text"} and flavor["code"] == "code"
    assert "python_model" not in flavor and not list(local.rglob("*.pkl"))
    assert (local / "serving_model.py").is_file()
    assert (local / "code" / "pipeline" / "serving.py").is_file()
    assert not list((local / "code").rglob("__pycache__"))
    assert store["client"].get_run(store["run_id"]).data.tags["model_uri"] == store["model_uri"]
    assert store["path_kept"]  # MLflow's check of the saved model leaves no code/ on sys.path


def test_the_model_requires_the_projects_dependencies_not_the_project(store):
    requirements = (store["local"] / "requirements.txt").read_text().split()
    names = [r.split("==")[0] for r in requirements]
    assert "seq2seq-pipeline" not in names and len(names) == len(set(names))
    assert REQUIREMENTS[0] in requirements  # the caller's pin is kept
    assert {"mlflow", "hydra-core", "tokenizers", "pandas"} <= set(names)
    assert "pytest" not in names  # the dev extra is not the model's
    assert all("==" in r for r in requirements)


def test_code_requirements_replace_the_project_and_keep_what_the_caller_pinned():
    out = artifacts.code_requirements(["torch==1.0", "Seq2Seq_Pipeline==0.1.0"])
    assert out[0] == "torch==1.0" and sum(r.startswith("torch==") for r in out) == 1
    assert not [r for r in out if r.lower().startswith(("seq2seq", "pytest", "ruff"))]


def test_the_loaded_model_maps_texts_to_texts(model):
    out = model.predict(pd.DataFrame({"source": ["1 2", "3 4 5"]}),
                        params={"beam_size": 3, "unknown": "unk"})
    assert list(out.columns) == ["prediction"] and len(out) == 2
    assert all(isinstance(p, str) for p in out["prediction"])
    assert model.metadata.signature == SIGNATURE
    assert isinstance(model.unwrap_python_model().translator, Translator)  # as predict loads it


@pytest.mark.parametrize(("frame", "params", "words"), [
    ({"text": ["1 2"]}, {}, "'source'"),
    ({"source": [" "]}, {}, "is empty"),
    ({"source": ["1 x"]}, {}, "outside the model's vocabulary: x"),
    ({"source": ["1 2"]}, {"beam_size": 0}, "beam_size=0 is invalid"),
    ({"source": ["1 2"]}, {"beam_size": MAX_BEAM + 1}, f"beam_size={MAX_BEAM + 1} is invalid"),
])
def test_the_model_refuses_bad_input_as_a_bad_request(model, frame, params, words):
    with pytest.raises(MlflowException, match=words) as err:
        model.predict(pd.DataFrame(frame), params=params)
    assert err.value.get_http_status_code() == 400


def test_an_unknown_kind_of_model_is_refused_before_anything_is_logged(store):
    with pytest.raises(ValueError, match="no pyfunc model 'ensemble': one of text"):
        log_pyfunc_model(store["uri"], store["run_id"], "ensemble", {}, SIGNATURE, None, [])
    assert set(MODELS) == {"text"}


def load_in_a_clean_python(flavor: str, local: Path, cwd: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    done = subprocess.run([sys.executable, "-I", "-c", CLEAN_LOAD, flavor, str(local)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow
def test_the_token_model_loads_and_predicts_without_the_project(store, tmp_path):
    out = load_in_a_clean_python("pyfunc", store["local"], tmp_path)
    assert out["pipeline"] == str(store["local"] / "code" / "pipeline" / "__init__.py")
    assert out["columns"] == ["prediction"] and len(out["predictions"]) == 2
    assert out["translator"] == "Translator"
    assert out["refused"][0] == "INVALID_PARAMETER_VALUE" and "vocabulary: x" in out["refused"][1]
    assert out["undeclared"] == []


@pytest.mark.slow
def test_the_vector_model_loads_and_generates_without_the_project(store, tmp_path):
    run_id = store["client"].create_run(store["client"].get_run(
        store["run_id"]).info.experiment_id).info.run_id
    uri = artifacts.log_model(store["uri"], run_id, instantiate(NET).eval(), REQUIREMENTS)
    local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "dl")))
    assert "seq2seq-pipeline" not in (local / "requirements.txt").read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    out = load_in_a_clean_python("pytorch", local, empty)
    assert out["pipeline"] == str(local / "code" / "pipeline" / "__init__.py")
    assert out["sequences"][0] == 1 and out["undeclared"] == []

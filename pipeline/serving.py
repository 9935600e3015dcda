"""A trained token model as an MLflow pyfunc model: strings in, strings out.

    model = mlflow.pyfunc.load_model("models:/seq2seq-files@champion")
    model.predict(pandas.DataFrame({"source": ["hello"]}))  # DataFrame with "prediction"

    mlflow models serve -m models:/seq2seq-files@champion --env-manager local
    curl -X POST localhost:5000/invocations -H 'Content-Type: application/json' \\
        -d '{"dataframe_records": [{"source": "hello"}], "params": {"beam_size": 5}}'

The model's files (:class:`pipeline.decode.Translator`) are its artifacts; its signature
takes a string column ``source`` and the parameters ``beam_size`` and ``unknown`` (``error``
or ``unk``). A request with no ``source`` column, an empty text or, unless ``unknown=unk``,
symbols outside the vocabulary is answered 400 with the reason.

No pickle: a model is logged as code (MLflow's models from code). Its code is
:mod:`pipeline.serving_model`, which builds the class its ``model_config`` names (``kind``,
a key of :data:`MODELS`), and the ``pipeline`` package travels with it (the model's ``code/``
folder, which MLflow puts on ``sys.path`` before running that file): it loads wherever its
requirements are installed, with or without the project.

:func:`load_translator` gives back a logged model's :class:`Translator` (``predict`` and the
ensemble champion load models with it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from pipeline.config import MAX_BEAM
from pipeline.decode import Translator
from pipeline.errors import ConfigError, InputError

SOURCE, PREDICTION = "source", "prediction"
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", SOURCE)]),
    outputs=Schema([ColSpec("string", PREDICTION)]),
    params=ParamSchema([ParamSpec("beam_size", "long", 1), ParamSpec("unknown", "string",
                                                                    "error")]),
)


class TextModel(mlflow.pyfunc.PythonModel):
    """The pyfunc face of a :class:`Translator`."""

    def load_context(self, context) -> None:
        self.translator = Translator.load(context.artifacts)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        params = params or {}
        if SOURCE not in getattr(model_input, "columns", ()):
            raise MlflowException(f"the input needs a {SOURCE!r} column of texts",
                                  INVALID_PARAMETER_VALUE)
        texts = model_input[SOURCE].tolist()
        beam = int(params.get("beam_size", 1))
        try:
            if not all(isinstance(t, str) for t in texts):
                raise InputError(f"every {SOURCE!r} must be a string")
            if not 1 <= beam <= MAX_BEAM:
                raise InputError(f"beam_size={beam} is invalid: an int in [1, {MAX_BEAM}]")
            self.translator.check(texts, params.get("unknown", "error"))
        except InputError as err:
            raise MlflowException(str(err), INVALID_PARAMETER_VALUE) from None
        return pd.DataFrame({PREDICTION: self.translator.translate(texts, beam)})


# The pyfunc models the project logs, by the ``kind`` their ``model_config`` names.
MODELS: dict[str, type[mlflow.pyfunc.PythonModel]] = {"text": TextModel}
MODEL_CODE = Path(__file__).with_name("serving_model.py")


def log_pyfunc_model(tracking_uri: str, run_id: str, kind: str, artifacts: dict[str, Path],
                     signature: ModelSignature, input_example, requirements: list[str]) -> str:
    """Log ``MODELS[kind]`` to the run as the pyfunc model ``model``, from code, its files
    (``artifacts``, by name) and the ``pipeline`` package with it; see
    :func:`artifacts.log_to_run` and :func:`artifacts.code_requirements`."""
    # Imported here: a loaded model imports this module, and needs no Lightning.
    from pipeline.tracking.artifacts import PACKAGE, code_requirements, log_to_run  # noqa: PLC0415

    if kind not in MODELS:
        raise ValueError(f"no pyfunc model {kind!r}: one of {', '.join(MODELS)}")
    return log_to_run(tracking_uri, run_id, lambda: mlflow.pyfunc.log_model(
        name="model", python_model=MODEL_CODE, model_config={"kind": kind},
        artifacts={k: str(v) for k, v in artifacts.items()}, code_paths=[str(PACKAGE)],
        signature=signature, input_example=input_example,
        pip_requirements=code_requirements(requirements)))


def log_text_model(tracking_uri: str, run_id: str, translator: Translator,
                   requirements: list[str], examples: list[str]) -> str:
    """Log ``translator`` to the run as the pyfunc model ``model`` (its files as artifacts,
    ``examples`` as the input example); see :func:`log_pyfunc_model`."""
    with tempfile.TemporaryDirectory() as tmp:
        files = translator.save(Path(tmp))
        return log_pyfunc_model(tracking_uri, run_id, "text", files, SIGNATURE,
                                pd.DataFrame({SOURCE: examples}), requirements)


def load_translator(model_uri: str, max_len: int | None = None) -> Translator:
    """A logged token model (the pyfunc text model) from any MLflow model URI; a vector
    task's PyTorch model is refused (:class:`ConfigError` on ``model_uri``)."""
    local = Path(mlflow.artifacts.download_artifacts(model_uri))
    if "pytorch" in mlflow.models.Model.load(str(local)).flavors:
        raise ConfigError("model_uri", model_uri, "a token model (texts in, texts out); this "
                          "is a vector task's PyTorch model: load it with mlflow.pytorch")
    translator = mlflow.pyfunc.load_model(str(local)).unwrap_python_model().translator
    if max_len:
        translator.max_len = max_len
    return translator

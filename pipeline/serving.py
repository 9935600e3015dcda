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
from pipeline.decode import InputError, Translator
from pipeline.tracking.artifacts import log_to_run

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


def log_text_model(tracking_uri: str, run_id: str, translator: Translator,
                   requirements: list[str], examples: list[str]) -> str:
    """Log ``translator`` to the run as the pyfunc model ``model`` (its files as artifacts,
    ``examples`` as the input example); see :func:`artifacts.log_to_run`."""
    with tempfile.TemporaryDirectory() as tmp:
        files = translator.save(Path(tmp))
        return log_to_run(tracking_uri, run_id, lambda: mlflow.pyfunc.log_model(
            name="model", python_model=TextModel(),
            artifacts={k: str(v) for k, v in files.items()}, signature=SIGNATURE,
            input_example=pd.DataFrame({SOURCE: examples}), pip_requirements=requirements))

"""The code of every pyfunc model the project logs (MLflow's models from code, no pickle).

MLflow copies this file into the model and runs it when the model is logged and each time it
is loaded, with the ``pipeline`` package shipped beside it already on ``sys.path``. The
model's ``model_config`` names its class: ``kind``, a key of
:data:`pipeline.serving.MODELS`.
"""

from mlflow.models import ModelConfig, set_model

from pipeline.serving import MODELS

set_model(MODELS[ModelConfig().get("kind")]())

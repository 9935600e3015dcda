"""Decode inputs with a logged model: ``python -m pipeline.predict``.

    python -m pipeline.predict model_uri=models:/seq2seq-reverse@champion \\
        'inputs=["1 2 3 4", "7 7 1"]' eval.beam_size=5

Inputs are space-separated source symbols; the vocabularies travel with the logged model.
A model that does not exist, an empty input or symbols outside the model's vocabulary stop
in one line (exit status 2) saying what would be right; ``unknown=unk`` reads unknown
symbols as ``<unk>`` on purpose.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from pipeline.config import ConfigError
from pipeline.data.vocab import SPECIALS, VOCAB_FILE, Vocab, load_vocabularies
from pipeline.decode import decode
from pipeline.logs import quiet
from pipeline.models import EncoderDecoder
from pipeline.tracking.store import StoreError, open_store, sqlite_path

log = logging.getLogger(__name__)


def load(model_uri: str) -> tuple[EncoderDecoder, tuple[Vocab, Vocab]]:
    """A logged model and its vocabularies from any MLflow model URI."""
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(model_uri))
    net = mlflow.pytorch.load_model(str(local))
    return net.eval(), load_vocabularies(next(local.rglob(VOCAB_FILE)))


def registered_models(tracking_uri: str) -> str:
    """``name (aliases: a, b; versions 1-3)`` for every registered model, or ``none``."""
    from mlflow import MlflowClient

    shown = []
    for model in MlflowClient(tracking_uri).search_registered_models():
        versions = sorted(int(v.version) for v in model.latest_versions or [])
        aliases = ", ".join(model.aliases) or "none"
        span = f"{versions[0]}-{versions[-1]}" if versions else "none"
        shown.append(f"{model.name} (aliases: {aliases}; versions {span})")
    return "; ".join(shown) or "none"


def check_model_uri(tracking_uri: str, model_uri: str) -> None:
    """A ``models:/name@alias`` or ``models:/name/version`` URI names a registered model."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if not model_uri.startswith("models:/") or model_uri.startswith("models:/m-"):
        return
    name, _, rest = model_uri[len("models:/"):].partition("@")
    client = MlflowClient(tracking_uri)
    try:
        if rest:
            client.get_model_version_by_alias(name, rest)
        elif "/" in name:
            client.get_model_version(*name.split("/", 1))
        else:
            client.get_registered_model(name)
    except MlflowException:
        raise ConfigError("model_uri", model_uri, "a registered model and alias or version; "
                          f"this store has: {registered_models(tracking_uri)}") from None


def sources(cfg: DictConfig, vocab: Vocab) -> list[list[str]]:
    """The inputs as symbol lists, each non-empty and, unless ``unknown=unk``, known."""
    inputs = OmegaConf.to_object(cfg.inputs) if OmegaConf.is_config(cfg.inputs) else cfg.inputs
    if isinstance(inputs, str):
        inputs = [inputs]
    split = [str(s).split() for s in inputs]
    if not split or not all(split):
        raise ConfigError("inputs", inputs, "one or more non-empty inputs of space-separated "
                          "symbols, e.g. 'inputs=[\"1 2 3\"]'")
    unknown = vocab.unknown(s for seq in split for s in seq)
    if unknown and cfg.unknown != "unk":
        known = " ".join(vocab.itos[len(SPECIALS):])
        raise ConfigError("inputs", inputs, f"symbols outside the model's vocabulary: "
                          f"{' '.join(unknown)} (it knows: {known}); unknown=unk reads them "
                          "as <unk>")
    return split


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    """Print one prediction per input."""
    import mlflow

    quiet()
    try:
        if cfg.unknown not in ("error", "unk"):
            raise ConfigError("unknown", cfg.unknown, "error or unk")
        path = sqlite_path(cfg.tracking_uri)
        if path is not None and not path.exists():
            raise ConfigError("tracking_uri", cfg.tracking_uri,
                              "a store with logged models: train one first (make train)")
        open_store(cfg.tracking_uri)
        mlflow.set_tracking_uri(cfg.tracking_uri)
        check_model_uri(cfg.tracking_uri, cfg.model_uri)
        net, vocabs = load(cfg.model_uri)
        for d in decode(net, sources(cfg, vocabs[0]), vocabs, cfg.max_len, cfg.eval.beam_size):
            print(" ".join(d.source), "->", " ".join(d.prediction))
    except (ConfigError, StoreError) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.error("%s", err)
        sys.exit(2)


if __name__ == "__main__":
    main()

"""Decode inputs with a logged model: ``python -m pipeline.predict``.

    python -m pipeline.predict model_uri=models:/seq2seq-reverse@champion \\
        'inputs=["1 2 3 4", "7 7 1"]' eval.beam_size=5
    python -m pipeline.predict model_uri=models:/seq2seq-files@champion inputs_file=words.txt
    cat words.txt | python -m pipeline.predict model_uri=... inputs_file=-

Inputs come from the command line or a file (``-``: standard input), one per line, and are
split as the model's training split them (its tokenizers travel with it; the built-in tasks
take space-separated symbols). Each prints one line, ``source<TAB>prediction``, in order;
they are decoded in batches of ``batch_size``. A model that does not exist, a file that
cannot be read, an empty input or symbols outside the model's vocabulary stop in one line
(exit status 2) naming the input (the file's line, or which of ``inputs``) and saying what
would be right; ``unknown=unk`` reads unknown symbols as ``<unk>`` on purpose.

Predictions alone go to standard output; the project's lines and errors to standard error
(``conf/hydra/job_logging/project.yaml``), library lines to ``predict.log`` in the run folder
(``outputs/predict``), written anew by each predict. A refused predict leaves neither.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from pipeline.config import register_configs
from pipeline.errors import ConfigError, DamagedFile, DataFileError, InputError, StoreError
from pipeline.logs import quiet
from pipeline.serving import load_translator
from pipeline.tracking.store import open_store, sqlite_path

log = logging.getLogger(__name__)


def registered_models(tracking_uri: str) -> str:
    """``name (aliases: a, b; versions 1-3)`` for every registered model, or ``none``."""
    # MLflow takes seconds to import: only to name what a store has.
    from mlflow import MlflowClient  # noqa: PLC0415

    shown = []
    for model in MlflowClient(tracking_uri).search_registered_models():
        versions = sorted(int(v.version) for v in model.latest_versions or [])
        aliases = ", ".join(model.aliases) or "none"
        span = f"{versions[0]}-{versions[-1]}" if versions else "none"
        shown.append(f"{model.name} (aliases: {aliases}; versions {span})")
    return "; ".join(shown) or "none"


def check_model_uri(tracking_uri: str, model_uri: str) -> None:
    """A ``models:/name@alias`` or ``models:/name/version`` URI names a registered model."""
    from mlflow import MlflowClient  # noqa: PLC0415 - MLflow: seconds, only for a models:/ URI
    from mlflow.exceptions import MlflowException  # noqa: PLC0415

    if not model_uri.startswith("models:/") or model_uri.startswith("models:/m-"):
        return
    name, _, rest = model_uri[len("models:/"):].partition("@")
    client = MlflowClient(tracking_uri)
    try:
        if rest:
            client.get_model_version_by_alias(name, rest)
        elif name.endswith("/latest"):  # the newest version (MLflow's reserved word)
            if not client.search_model_versions(f"name = '{name[:-len('/latest')]}'"):
                raise MlflowException("no version")
        elif "/" in name:
            client.get_model_version(*name.split("/", 1))
        else:
            client.get_registered_model(name)
    except MlflowException:
        raise ConfigError("model_uri", model_uri, "a registered model and alias or version; "
                          f"this store has: {registered_models(tracking_uri)}") from None


def inputs(cfg: DictConfig) -> tuple[str, list[str]]:
    """The setting the inputs came from and the inputs: ``inputs_file`` (one per line; ``-``
    standard input) or the ``inputs`` list."""
    if cfg.get("inputs_file"):
        name = cfg.inputs_file
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise DataFileError("inputs_file", name, f"cannot be read as UTF-8 text: "
                                f"{getattr(err, 'strerror', None) or err}") from None
        lines = text.split("\n")  # by "\n" alone: the numbers are an editor's line numbers
        if lines[-1] == "":
            lines.pop()
        return "inputs_file", [line.removesuffix("\r") for line in lines]
    given = OmegaConf.to_object(cfg.inputs) if OmegaConf.is_config(cfg.inputs) else cfg.inputs
    return "inputs", [given] if isinstance(given, str) else [str(x) for x in given]


def refusal(cfg: DictConfig, key: str, texts: list[str], err: InputError) -> ConfigError:
    """The line for an input the model refuses: the file's line, or which of ``inputs``."""
    if key == "inputs_file":
        name = "standard input" if cfg.inputs_file == "-" else cfg.inputs_file
        if err.index is None:
            return DataFileError(key, name, "no inputs: give one per line")
        return DataFileError(key, name, f"the line {err.problem}", line=err.index + 1)
    if err.index is None:
        return ConfigError(key, texts, err.problem)
    return ConfigError(key, texts[err.index], str(err))


def leave_nothing(cfg: DictConfig) -> None:
    """After a refusal: the run folder's log file goes (its one line is on stderr), and the
    folder with it, and the output folder, where nothing else is in them."""
    if not HydraConfig.initialized():
        return
    folder = Path(HydraConfig.get().runtime.output_dir)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and \
                Path(handler.baseFilename).parent == folder:
            root.removeHandler(handler)
            handler.close()
            Path(handler.baseFilename).unlink(missing_ok=True)
    for empty in (folder, Path(cfg.paths.output_dir)):
        with contextlib.suppress(OSError):
            empty.rmdir()


register_configs()  # the resolvers conf/paths uses (abspath)


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    """Print one prediction per input."""
    import mlflow  # noqa: PLC0415 - seconds to import: after bad settings are refused

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
        translator = load_translator(cfg.model_uri, cfg.max_len)
        key, texts = inputs(cfg)
        try:
            translator.check(texts, cfg.unknown)
        except InputError as err:
            raise refusal(cfg, key, texts, err) from None
        predictions = translator.translate(texts, cfg.eval.beam_size, cfg.batch_size)
        for text, prediction in zip(texts, predictions, strict=True):
            print(f"{text}\t{prediction}")
    except (ConfigError, StoreError, DamagedFile) as err:  # a model's damaged file too
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.error("%s", err)
        leave_nothing(cfg)
        sys.exit(2)


if __name__ == "__main__":
    main()

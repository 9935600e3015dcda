"""Structured configs (typed schemas in Hydra's ConfigStore) and their validation.

Types are checked by OmegaConf when overrides are merged (``model.hidden_dim=abc`` and
``model.cell=transformer`` fail there, naming the key); ranges and combinations are
checked by :func:`validate` before any data is built or any model trained.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf

from pipeline.data.tasks import TASKS
from pipeline.data.tasks.files import FilesSettings
from pipeline.data.tasks.files import check_settings as check_files
from pipeline.errors import ConfigError
from pipeline.models.seq2seq import DEPTH_RULE, Switches, split_depth

# Beyond these a run would not fit in memory or time on any machine this project targets.
MAX_SPLIT_SIZE = 10_000_000
MAX_SEQUENCE_LENGTH = 1_000
MAX_VOCAB_SIZE = 1_000_000
MAX_BEAM = 100
MAX_SEEDS = 100
MATMUL_PRECISIONS = ("highest", "high", "medium")


@dataclass
class ModelConfig(Switches):
    """The model group's schema: the encoder-decoder's switches, each declared once in
    ``pipeline.models.seq2seq.Switches``, built by keyword."""

    _target_: str = "pipeline.models.EncoderDecoder"


@dataclass
class DataConfig:
    """Settings every task shares; each task adds its own options."""

    _target_: str = "pipeline.data.Seq2SeqDataModule"
    task: str = "reverse"
    batch_size: int = 64
    train_size: int = 10000
    val_size: int = 1000
    test_size: int = 1000
    seed: int = "${data_seed}"  # the splits' seed: the top-level data_seed
    num_workers: int = 0
    cache_dir: str | None = "${paths.data_dir}"  # the splits, built once (conf/paths)
    # Batches of similar length (token tasks), in random order: far less padding.
    bucket_by_length: bool = True


@dataclass
class SyntheticDataConfig(DataConfig):
    """Random token sequences (copy, reverse, sort)."""

    vocab_size: int = 10
    min_len: int = 1
    max_len: int = 10


@dataclass
class AdditionDataConfig(DataConfig):
    """"123+45" -> "168" (the Keras addition_rnn example)."""

    digits: int = 3
    reverse_input: bool = False


@dataclass
class VectorsDataConfig(DataConfig):
    """The Keras article's float-vector setup."""

    input_length: int = 7
    input_dim: int = 5
    output_length: int = 8
    output_dim: int = 8


@dataclass
class G2PDataConfig(DataConfig):
    """CMUdict grapheme-to-phoneme."""

    stress: bool = False
    max_word_len: int = 20


@dataclass
class CO2DataConfig(DataConfig):
    """Mauna Loa CO2 forecasting."""

    input_length: int = 52
    output_length: int = 13
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    relative: bool = True


@dataclass
class FilesDataConfig(FilesSettings, DataConfig):
    """The user's own files: ``pipeline.data.tasks.files.FilesSettings``, each declared once
    there; the split sizes are caps."""

    task: str = "files"


DATA_SCHEMAS = {
    "data_schema": DataConfig,
    "synthetic_schema": SyntheticDataConfig,
    "addition_schema": AdditionDataConfig,
    "vectors_schema": VectorsDataConfig,
    "g2p_schema": G2PDataConfig,
    "co2_schema": CO2DataConfig,
    "files_schema": FilesDataConfig,
}


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore (group files extend them by name)."""
    cs = ConfigStore.instance()
    cs.store(group="model", name="model_schema", node=ModelConfig)
    for name, node in DATA_SCHEMAS.items():
        cs.store(group="data", name=name, node=node)


def local_artifacts(tracking_uri: str, folder: str) -> str | None:
    """Where a run's artifacts go: ``folder`` for a local store; null for a server
    (http, https), which decides itself (proxied artifacts)."""
    return None if tracking_uri.startswith(("http://", "https://")) else f"file://{folder}"


def _register_resolvers() -> None:
    if not OmegaConf.has_resolver("abspath"):
        OmegaConf.register_new_resolver("abspath", lambda p: str(Path(p).resolve()))
    if not OmegaConf.has_resolver("local_artifacts"):
        OmegaConf.register_new_resolver("local_artifacts", local_artifacts)


_register_resolvers()


def check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(key, value, allowed)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate(cfg: DictConfig) -> None:
    """Reject ranges and combinations that cannot work, before any work is done."""
    m, d = cfg.model, cfg.data
    check(d.task in TASKS, "data.task", d.task, f"one of {', '.join(sorted(TASKS))} (or "
           "data=<task> for its defaults)")
    depth = OmegaConf.to_object(m.depth) if isinstance(m.depth, ListConfig) else m.depth
    try:
        split_depth(depth)
    except ValueError:
        raise ConfigError("model.depth", depth, DEPTH_RULE) from None
    check(m.hidden_dim >= 1, "model.hidden_dim", m.hidden_dim, "an int >= 1")
    check(m.embed_dim is None or m.embed_dim >= 1, "model.embed_dim", m.embed_dim,
           "null (= hidden_dim) or an int >= 1")
    check(not (m.bidirectional and m.directions == "split" and m.hidden_dim % 2),
          "model.hidden_dim", m.hidden_dim, "an even int with model.directions=split")
    check(0.0 <= m.dropout < 1.0, "model.dropout", m.dropout, "a probability in [0, 1)")
    check(0.0 <= m.io_dropout < 1.0, "model.io_dropout", m.io_dropout,
           "a probability in [0, 1)")
    check(0.0 <= m.teacher_forcing <= 1.0, "model.teacher_forcing", m.teacher_forcing,
           "a ratio in [0, 1] (1.0 = always feed the ground truth)")
    sees_source = m.bridge or m.peek or m.attention != "none" or not m.feedback
    check(sees_source, "model.bridge", m.bridge,
           "true, or set model.peek=true or a model.attention: otherwise the decoder never "
           "sees the source")
    check(d.batch_size >= 1, "data.batch_size", d.batch_size, "an int >= 1")
    for split in ("train_size", "val_size", "test_size"):
        check(1 <= d[split] <= MAX_SPLIT_SIZE, f"data.{split}", d[split],
               f"an int in [1, {MAX_SPLIT_SIZE:,}]")
    cores = os.cpu_count() or 1
    check(0 <= d.num_workers <= cores, "data.num_workers", d.num_workers,
           f"an int in [0, {cores}] (this machine's cores)")
    if "min_len" in d and "max_len" in d:
        check(d.min_len >= 1, "data.min_len", d.min_len, "an int >= 1")
        check(d.min_len <= d.max_len <= MAX_SEQUENCE_LENGTH, "data.max_len", d.max_len,
               f"an int >= data.min_len ({d.min_len}) and <= {MAX_SEQUENCE_LENGTH}")
    if "vocab_size" in d:
        check(1 <= d.vocab_size <= MAX_VOCAB_SIZE, "data.vocab_size", d.vocab_size,
               f"an int in [1, {MAX_VOCAB_SIZE:,}]")
    if d.task == "files":  # here: inside Hydra's instantiate the line would be wrapped
        check_files(d)
    width = cfg.eval.get("bucket_width")
    check(width is None or (is_int(width) and width >= 1), "eval.bucket_width", width,
           "null (about 5 buckets) or an int >= 1")
    check(is_int(cfg.seeds) and 1 <= cfg.seeds <= MAX_SEEDS, "seeds", cfg.seeds,
          f"an int in [1, {MAX_SEEDS}]: replicates of every configuration; or auto in a grid "
          "sweep with hydra/sweeper=replicates (make sweep SEEDS=auto)")
    effect = cfg.get("min_effect")
    check(effect is None or (isinstance(effect, int | float) and 0 < effect < float("inf")),
          "min_effect", effect, "null or a difference > 0 in the monitored metric's units")
    smoothing = cfg.get("label_smoothing", 0.0)
    check(isinstance(smoothing, int | float) and 0.0 <= smoothing < 1.0, "label_smoothing",
          smoothing, "a share in [0, 1) (0: plain cross-entropy)")
    for key in ("beam_size", "val_beam_size"):
        check(1 <= cfg.eval[key] <= MAX_BEAM, f"eval.{key}", cfg.eval[key],
              f"an int in [1, {MAX_BEAM}]")
    pad_to = cfg.accel.get("pad_to", 8)
    check(is_int(pad_to) and 1 <= pad_to <= MAX_SEQUENCE_LENGTH, "accel.pad_to", pad_to,
          f"an int in [1, {MAX_SEQUENCE_LENGTH}]: lengths are padded to a multiple of it")
    precision = cfg.accel.matmul_precision
    check(precision in MATMUL_PRECISIONS, "accel.matmul_precision", precision,
           f"one of {', '.join(MATMUL_PRECISIONS)}")
    validate_trainer(cfg.trainer)


def validate_trainer(t: DictConfig) -> None:
    """The Trainer's numeric knobs whose bad values Lightning would only judge in ``fit``
    (or take to mean "forever"): what Lightning refuses when it is built, ``build`` reports."""
    check(is_int(t.max_epochs) and t.max_epochs >= 1, "trainer.max_epochs", t.max_epochs,
           "an int >= 1")
    min_epochs = t.get("min_epochs")
    check(min_epochs is None or (is_int(min_epochs) and 0 <= min_epochs <= t.max_epochs),
           "trainer.min_epochs", min_epochs, f"null or an int in [0, trainer.max_epochs "
           f"({t.max_epochs})]")
    for key in ("check_val_every_n_epoch", "log_every_n_steps"):
        value = t.get(key)
        check(value is None or (is_int(value) and value >= 1), f"trainer.{key}", value,
               "null or an int >= 1")
    clip = t.get("gradient_clip_val")
    check(clip is None or (isinstance(clip, int | float) and 0 <= clip < float("inf")),
           "trainer.gradient_clip_val", clip, "null or a number >= 0 (0: no clipping)")


register_configs()

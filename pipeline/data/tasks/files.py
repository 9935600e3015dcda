"""The user's own data: source/target text pairs read from files through Hugging Face
``datasets`` (``pipeline/data/readers.py``), tokenised per side (``data/tokenize.py``).

Formats: TSV and CSV with a header (columns by name) or without one (columns by position,
0-based), JSON Lines (fields by name), Parquet (columns by name), and line-aligned parallel
text files, a ``[source_file, target_file]`` pair per split (the OpenNMT-py and fairseq
layout). ``format: auto`` goes by the file's extension.

Instead of files, ``dataset`` names a Hugging Face dataset: a Hub name where the network
allows it (``dataset_config``, ``revision``), or a local dataset folder; its ``train``,
``validation`` (or ``val``, ``dev``) and ``test`` splits are used.

Splits come from ``train``, ``val`` and ``test`` files, or, where ``val`` and ``test`` are
null, from ``train`` alone: each pair lands in the split its source's salted hash says
(:func:`split_rank`), so every line with the same source lands in the same split. Within a
split the lines that share a source are one example whose first target is trained on and
whose targets are all acceptable references.

A setting or file that cannot be used stops everything before any run, store or cache
exists, with one line (:class:`ConfigError`, :class:`DataFileError`) naming the setting, the
file, the line and what was expected; :func:`check_settings` judges the settings and that
the files exist before anything is built.
Training pairs with more than ``max_len`` tokens on either side are dropped and counted in
the log; validation and test pairs are never dropped.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.data.dataset import Packed
from pipeline.data.readers import FORMATS, file_digest, read_dataset, read_pairs, split_files
from pipeline.data.tasks.base import SPLITS, TokenTask, split_rank
from pipeline.data.tokenize import (
    TOKENIZERS,
    Subword,
    Tokenizer,
    make_tokenizer,
    tokenizers_json,
)
from pipeline.data.vocab import EOS, Vocab
from pipeline.errors import ConfigError, DataFileError

log = logging.getLogger(__name__)


@dataclass
class TextSplit:
    """A split as raw text: one example per distinct source, its first target, and every
    target given for it (``references``, None where no source has more than one)."""

    sources: list[str]
    targets: list[str]
    references: list[list[str]] | None = None


@dataclass
class FilesSettings:
    """``data=files``'s settings, each declared once, here: its name, type and default. The
    data group's typed config extends it (``pipeline/config.py``); :class:`Files` takes them
    by keyword."""

    train: Any = None  # a file, or a [source, target] pair of line-aligned text files
    val: Any = None  # null (with test null): split train by a hash of the source
    test: Any = None
    format: str = "auto"
    header: bool = True
    source: Any = "source"  # column or field name; a 0-based position without a header
    target: Any = "target"
    tokenizer: str = "chars"
    source_tokenizer: str | None = None  # null: tokenizer
    target_tokenizer: str | None = None
    subword_vocab_size: int = 8000
    min_freq: int = 1
    max_vocab_size: int | None = None
    max_len: int = 200
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    split_salt: str = "split"
    dataset: str | None = None  # a Hugging Face dataset (Hub name or local folder)
    dataset_config: str | None = None
    revision: str | None = None


class Files(TokenTask):
    """Pairs of texts from the user's files; tokenised per side (:mod:`tokenize`).

    See the module docstring for formats and splits. ``source``/``target`` name the columns
    (or JSON fields; 0-based positions for headerless TSV/CSV). ``tokenizer`` applies to
    both sides unless ``source_tokenizer``/``target_tokenizer`` say otherwise; subword
    models learn ``subword_vocab_size`` pieces from the training split. ``min_freq`` and
    ``max_vocab_size`` bound each side's vocabulary (the rest reads as ``<unk>``).
    """

    def __init__(self, **settings: Any):
        s = FilesSettings(**settings)
        self.format, self.header = s.format, s.header
        self.dataset = None if s.dataset is None else (s.dataset, s.dataset_config, s.revision)
        self.columns = (s.source, s.target)
        self.min_freq, self.max_vocab_size, self.max_len = s.min_freq, s.max_vocab_size, s.max_len
        self.fractions, self.salt = (s.val_fraction, s.test_fraction), s.split_salt
        check_options(s)
        if (s.val is None) != (s.test is None):
            raise ConfigError(("data.val", "data.test"), (s.val, s.test), "both files, or both "
                              "null to split data.train by a hash of the source")
        if s.dataset is not None and s.train is not None:
            raise ConfigError(("data.dataset", "data.train"), (s.dataset, s.train), "one of "
                              "them: a Hugging Face dataset, or your files")
        self.files = {} if s.dataset is not None else {
            name: split_files(f"data.{name}", value, s.format)
            for name, value in (("train", s.train), ("val", s.val), ("test", s.test))
            if value is not None or name == "train"}
        self.tokenizers: tuple[Tokenizer, Tokenizer] = (
            make_tokenizer(s.source_tokenizer or s.tokenizer, s.subword_vocab_size),
            make_tokenizer(s.target_tokenizer or s.tokenizer, s.subword_vocab_size))
        self.digests: dict[Path, str] = {}  # each file read once for its content digest

    # -- what the data module asks ------------------------------------------------------

    def fingerprint(self) -> str:
        """A digest of every file's content: an edited file is a new data set. A Hub
        dataset is known by its name, configuration and revision."""
        digest = hashlib.sha256()
        for path in self.paths():
            digest.update(self.digest(path).encode())
        if self.dataset is not None:
            digest.update(repr(self.dataset).encode())
        return digest.hexdigest()[:16]

    def digest(self, path: Path) -> str:
        """``path``'s content digest, computed once per task."""
        if path not in self.digests:
            self.digests[path] = file_digest(path)
        return self.digests[path]

    def where(self, name: str) -> tuple[str, Path | str]:
        """The setting and the file (or dataset) that split ``name`` comes from."""
        if self.dataset is not None:
            return "data.dataset", self.dataset[0]
        files = self.files.get(name, self.files["train"])
        return files.key, files.paths[0]

    def paths(self) -> list[Path]:
        """Every file read: the split files, or a local dataset folder's files."""
        if self.dataset is None:
            return [p for files in self.files.values() for p in files.paths]
        folder = Path(self.dataset[0])
        return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []

    def sources(self) -> dict[str, dict]:
        """Each split's files and a digest of its content (for the run's dataset inputs);
        a split cut from train by hash names the train file and digests its cut too."""
        out = {}
        if self.dataset is not None:
            return {name: {"paths": [self.dataset[0]],
                           "digest": hashlib.sha256(f"{self.fingerprint()}:{name}".encode())
                           .hexdigest()[:32]} for name in SPLITS}
        for name in SPLITS:
            files = self.files.get(name, self.files["train"])
            digest = hashlib.sha256("".join(map(self.digest, files.paths)).encode())
            if name not in self.files or "val" not in self.files:
                digest.update(f"{name}:{self.fractions}:{self.salt}".encode())
            out[name] = {"paths": [str(p) for p in files.paths],
                         "digest": digest.hexdigest()[:32]}
        return out

    def build(self, seed: int, sizes: dict[str, int | None]) -> dict[str, TextSplit]:
        """The splits as text, each capped at its size (file order); ``seed`` is unused:
        a split follows from the files (and, for a hash split, the sources)."""
        if self.dataset is not None:
            pairs = read_dataset(*self.dataset, self.columns)
        else:
            pairs = {name: read_pairs(files, self.columns, self.header)
                     for name, files in self.files.items()}
        if "val" not in pairs:
            pairs = self.hash_split(pairs["train"])
        splits = {}
        for name in SPLITS:
            sources, targets = pairs[name]
            if not sources:
                key, where = self.where(name)
                raise DataFileError(key, where, f"the {name} split is empty" + (
                    " (raise data.val_fraction/data.test_fraction, or give val and test)"
                    if key != f"data.{name}" else ""))
            splits[name] = group(sources, targets, sizes.get(name))
        return splits

    def hash_split(self, pairs: tuple[list[str], list[str]]):
        """train's pairs cut into train/val/test by each source's salted hash."""
        val, test = self.fractions
        out = {name: ([], []) for name in SPLITS}
        for s, t in zip(*pairs, strict=True):
            rank = split_rank(s, self.salt)
            name = "test" if rank < test else "val" if rank < test + val else "train"
            out[name][0].append(s)
            out[name][1].append(t)
        return out

    def vocabularies(self, splits: dict[str, TextSplit]) -> tuple[Vocab, Vocab]:
        """Each side's tokenizer learnt from the training split, and its vocabulary."""
        train = splits["train"]
        bounds = (self.min_freq, self.max_vocab_size)
        vocabs = (self.tokenizers[0].fit(train.sources, *bounds),
                  self.tokenizers[1].fit(train.targets, *bounds))
        for side, tokenizer in zip(("source", "target"), self.tokenizers, strict=True):
            if isinstance(tokenizer, Subword):
                note_fewer_pieces(side, tokenizer, self.max_vocab_size, self.min_freq)
        return vocabs

    def encode(self, name: str, split: TextSplit, vocabs: tuple[Vocab, Vocab]) -> dict:
        """The split as ids (targets end in EOS), its references' ids and texts; training
        pairs longer than ``max_len`` tokens are dropped."""
        src = self.tokenizers[0].encode(split.sources, vocabs[0])
        tgt = self.tokenizers[1].encode(split.targets, vocabs[1])
        keep = None
        if name == "train":
            keep = (src[1] <= self.max_len) & (tgt[1] <= self.max_len)
            if not keep.all():
                log.info("data: %d of %d training pairs have more than data.max_len=%d tokens "
                         "and are left out", int((~keep).sum()), len(keep), self.max_len)
            if not keep.any():
                raise DataFileError(*self.where("train"), f"every training pair has more than "
                                    f"data.max_len={self.max_len} tokens on a side")
            src, tgt = select(*src, keep), select(*tgt, keep)
        entry = {"src": packed(*src), "tgt": packed(*with_eos(*tgt))}
        refs = split.references
        if refs is not None:
            if keep is not None:
                refs = [r for r, k in zip(refs, keep.tolist(), strict=True) if k]
            flat = [r for rs in refs for r in rs]
            entry["refs"] = packed(*with_eos(*self.tokenizers[1].encode(flat, vocabs[1])))
            entry["ref_offsets"] = torch.from_numpy(np.cumsum([0, *map(len, refs)]))
        if name != "train":
            entry["texts"] = refs or [[t] for t in split.targets]
        return entry

    def tokenizers_json(self) -> dict:
        """The fitted tokenizers as ``tokenizers.json`` holds them."""
        return tokenizers_json(*self.tokenizers)


# -- checking the settings ----------------------------------------------------------------

def check_settings(data) -> None:
    """Refuse ``data=files`` settings that cannot work, and files that are not there, as
    :class:`Files` does when built; ``data`` is the data config. Called by
    :func:`pipeline.config.validate`, before Hydra's ``instantiate`` would wrap the line."""
    Files(**{f.name: data[f.name] for f in fields(FilesSettings) if f.name in data})


def check_options(s: FilesSettings) -> None:
    """Refuse option values that cannot work, naming the key."""
    def check(ok, key, value, allowed):
        if not ok:
            raise ConfigError(key, value, allowed)

    check(s.format in FORMATS, "data.format", s.format, f"one of {', '.join(FORMATS)}")
    for key in ("tokenizer", "source_tokenizer", "target_tokenizer"):
        value = getattr(s, key)
        check(value in TOKENIZERS or (value is None and key != "tokenizer"), f"data.{key}",
              value, f"one of {', '.join(TOKENIZERS)}"
              + ("" if key == "tokenizer" else " (null: data.tokenizer)"))
    check(s.subword_vocab_size >= 8, "data.subword_vocab_size", s.subword_vocab_size,
          "an int >= 8")
    check(s.min_freq >= 1, "data.min_freq", s.min_freq, "an int >= 1")
    check(s.max_vocab_size is None or s.max_vocab_size >= 1, "data.max_vocab_size",
          s.max_vocab_size, "null (no cap) or an int >= 1")
    check(s.max_len >= 1, "data.max_len", s.max_len, "an int >= 1 (tokens per side)")
    for key in ("val_fraction", "test_fraction"):
        value = getattr(s, key)
        check(0.0 < value < 1.0, f"data.{key}", value, "a share in (0, 1)")
    check(s.val_fraction + s.test_fraction < 1.0, ("data.val_fraction", "data.test_fraction"),
          (s.val_fraction, s.test_fraction), "their sum must stay below 1 to leave a train "
          "split")


def note_fewer_pieces(side: str, tokenizer: Subword, max_vocab_size: int | None,
                      min_freq: int) -> None:
    """Log, in one line, a subword model that learnt fewer pieces than asked for."""
    learnt = tokenizer.model.get_vocab_size()
    asked, key = tokenizer.vocab_size, "data.subword_vocab_size"
    if max_vocab_size is not None and max_vocab_size < asked:
        asked, key = max_vocab_size, "data.max_vocab_size"
    if learnt < asked:
        seen = (f" seen at least data.min_freq={min_freq} times"
                if min_freq > 1 and tokenizer.kind == "bpe" else "")
        log.info("data: the %s side's %s model learnt %d pieces, fewer than %s=%d: its "
                 "training text has too few distinct pieces%s for more", side, tokenizer.kind,
                 learnt, key, asked, seen)


# -- grouping and encoding -----------------------------------------------------------------

def group(sources: list[str], targets: list[str], size: int | None) -> TextSplit:
    """One example per distinct source (first appearance), its targets as references; at
    most ``size`` examples."""
    by_source: dict[str, list[str]] = {}
    for s, t in zip(sources, targets, strict=True):
        refs = by_source.setdefault(s, [])
        if t not in refs:
            refs.append(t)
    items = list(by_source.items())[:size]
    several = any(len(r) > 1 for _, r in items)
    return TextSplit([s for s, _ in items], [r[0] for _, r in items],
                     [r for _, r in items] if several else None)


def select(values: np.ndarray, lengths: np.ndarray, keep: np.ndarray):
    """The sequences ``keep`` marks, from flat ``values`` and their ``lengths``."""
    return values[np.repeat(keep, lengths)], lengths[keep]


def with_eos(values: np.ndarray, lengths: np.ndarray):
    """Every sequence with EOS appended."""
    return np.insert(values, np.cumsum(lengths), EOS), lengths + 1


def packed(values: np.ndarray, lengths: np.ndarray) -> Packed:
    return Packed.from_arrays(torch.from_numpy(values), torch.from_numpy(lengths))

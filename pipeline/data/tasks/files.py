"""The user's own data: source/target text pairs read from files through Hugging Face
``datasets`` (Arrow, the library the ecosystem loads local and Hub data with).

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

A file that cannot be used stops everything before any run, store or cache exists, with one
line (:class:`DataFileError`) naming the setting, the file, the line and what was expected.
Training pairs with more than ``max_len`` tokens on either side are dropped and counted in
the log; validation and test pairs are never dropped.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.data.dataset import Packed
from pipeline.data.tasks.base import SPLITS, TokenTask, split_rank
from pipeline.data.tokenize import TOKENIZERS, Tokenizer, make_tokenizer, tokenizers_json
from pipeline.data.vocab import EOS, Vocab
from pipeline.errors import ConfigError, DataFileError

log = logging.getLogger(__name__)
FORMATS = ("auto", "tsv", "csv", "jsonl", "parquet", "text")
EXTENSIONS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl",
              ".parquet": "parquet"}


@dataclass
class TextSplit:
    """A split as raw text: one example per distinct source, its first target, and every
    target given for it (``references``, None where no source has more than one)."""

    sources: list[str]
    targets: list[str]
    references: list[list[str]] | None = None
    dropped: int = 0


@dataclass(frozen=True)
class SplitFiles:
    """Where one split is read from: the setting that named it and its file(s)."""

    key: str
    paths: tuple[Path, ...]
    format: str


class Files(TokenTask):
    """Pairs of texts from the user's files; tokenised per side (:mod:`tokenize`).

    See the module docstring for formats and splits. ``source``/``target`` name the columns
    (or JSON fields; 0-based positions for headerless TSV/CSV). ``tokenizer`` applies to
    both sides unless ``source_tokenizer``/``target_tokenizer`` say otherwise; subword
    models learn ``subword_vocab_size`` pieces from the training split. ``min_freq`` and
    ``max_vocab_size`` bound each side's vocabulary (the rest reads as ``<unk>``).
    """

    def __init__(
        self,
        train: str | Sequence[str] | None = None,
        val: str | Sequence[str] | None = None,
        test: str | Sequence[str] | None = None,
        format: str = "auto",
        header: bool = True,
        source: str | int = "source",
        target: str | int = "target",
        tokenizer: str = "chars",
        source_tokenizer: str | None = None,
        target_tokenizer: str | None = None,
        subword_vocab_size: int = 8000,
        min_freq: int = 1,
        max_vocab_size: int | None = None,
        max_len: int = 200,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        split_salt: str = "split",
        dataset: str | None = None,
        dataset_config: str | None = None,
        revision: str | None = None,
    ):
        self.format, self.header = format, header
        self.dataset = None if dataset is None else (dataset, dataset_config, revision)
        self.columns = (source, target)
        self.min_freq, self.max_vocab_size, self.max_len = min_freq, max_vocab_size, max_len
        self.fractions, self.salt = (val_fraction, test_fraction), split_salt
        check_options(format, tokenizer, source_tokenizer, target_tokenizer, subword_vocab_size,
                      min_freq, max_vocab_size, max_len, val_fraction, test_fraction)
        if (val is None) != (test is None):
            raise ConfigError(("data.val", "data.test"), (val, test), "both files, or both "
                              "null to split data.train by a hash of the source")
        if dataset is not None and train is not None:
            raise ConfigError(("data.dataset", "data.train"), (dataset, train), "one of them: "
                              "a Hugging Face dataset, or your files")
        self.files = {} if dataset is not None else {
            name: split_files(f"data.{name}", value, format)
            for name, value in (("train", train), ("val", val), ("test", test))
            if value is not None or name == "train"}
        self.tokenizers: tuple[Tokenizer, Tokenizer] = (
            make_tokenizer(source_tokenizer or tokenizer, subword_vocab_size),
            make_tokenizer(target_tokenizer or tokenizer, subword_vocab_size))

    # -- what the data module asks ------------------------------------------------------

    def fingerprint(self) -> str:
        """A digest of every file's content: an edited file is a new data set. A Hub
        dataset is known by its name, configuration and revision."""
        digest = hashlib.sha256()
        for path in self.paths():
            digest.update(file_digest(path).encode())
        if self.dataset is not None:
            digest.update(repr(self.dataset).encode())
        return digest.hexdigest()[:16]

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
            digest = hashlib.sha256("".join(map(file_digest, files.paths)).encode())
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
                files = self.files.get(name, self.files.get("train"))
                key, where = ((files.key, files.paths[0]) if files is not None
                              else ("data.dataset", self.dataset[0]))
                raise DataFileError(key, where, f"the {name} split is empty" + (
                    " (raise data.val_fraction/data.test_fraction, or give val and test)"
                    if files is None or files.key == "data.train" else ""))
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
        return (self.tokenizers[0].fit(train.sources, *bounds),
                self.tokenizers[1].fit(train.targets, *bounds))

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
                raise DataFileError(self.files["train"].key, self.files["train"].paths[0],
                                    f"every training pair has more than data.max_len="
                                    f"{self.max_len} tokens on a side")
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

def check_options(fmt, tokenizer, source_tokenizer, target_tokenizer, subword_vocab_size,
                  min_freq, max_vocab_size, max_len, val_fraction, test_fraction) -> None:
    """Refuse option values that cannot work, naming the key."""
    def check(ok, key, value, allowed):
        if not ok:
            raise ConfigError(key, value, allowed)

    check(fmt in FORMATS, "data.format", fmt, f"one of {', '.join(FORMATS)}")
    for key, value in (("tokenizer", tokenizer), ("source_tokenizer", source_tokenizer),
                       ("target_tokenizer", target_tokenizer)):
        check(value in TOKENIZERS or (value is None and key != "tokenizer"), f"data.{key}",
              value, f"one of {', '.join(TOKENIZERS)}"
              + ("" if key == "tokenizer" else " (null: data.tokenizer)"))
    check(subword_vocab_size >= 8, "data.subword_vocab_size", subword_vocab_size, "an int >= 8")
    check(min_freq >= 1, "data.min_freq", min_freq, "an int >= 1")
    check(max_vocab_size is None or max_vocab_size >= 1, "data.max_vocab_size", max_vocab_size,
          "null (no cap) or an int >= 1")
    check(max_len >= 1, "data.max_len", max_len, "an int >= 1 (tokens per side)")
    for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        check(0.0 < value < 1.0, f"data.{key}", value, "a share in (0, 1)")
    check(val_fraction + test_fraction < 1.0, ("data.val_fraction", "data.test_fraction"),
          (val_fraction, test_fraction), "their sum must stay below 1 to leave a train split")


def split_files(key: str, value, fmt: str) -> SplitFiles:
    """The file(s) ``key`` names, each checked to exist, and their format."""
    if value is None:
        raise ConfigError(key, value, "a file (data.train=PATH), or a [source, target] pair "
                          "of line-aligned text files")
    paths = [value] if isinstance(value, str | Path) else list(value)
    if not 1 <= len(paths) <= 2:
        raise ConfigError(key, value, "one file, or a [source, target] pair of text files")
    paths = tuple(Path(str(p)).expanduser().resolve() for p in paths)
    for path in paths:
        if not path.is_file():
            raise DataFileError(key, path, "no such file")
    if len(paths) == 2:
        if fmt not in ("auto", "text"):
            raise ConfigError((key, "data.format"), (value, fmt), "a [source, target] pair "
                              "is read as line-aligned text (data.format=text or auto)")
        return SplitFiles(key, paths, "text")
    if fmt == "text":
        raise ConfigError((key, "data.format"), (value, fmt), "text needs a [source, target] "
                          "pair of line-aligned files")
    if fmt == "auto":
        fmt = EXTENSIONS.get(paths[0].suffix.lower())
        if fmt is None:
            raise DataFileError(key, paths[0], "cannot tell the format from the extension; "
                                f"set data.format (one of {', '.join(FORMATS[1:])})")
    return SplitFiles(key, paths, fmt)


# -- reading ---------------------------------------------------------------------------------

def read_pairs(files: SplitFiles, columns: tuple, header: bool) -> tuple[list[str], list[str]]:
    """The (sources, targets) texts of one split, every one non-empty."""
    if files.format == "text":
        sources, targets = (read_lines(files, path) for path in files.paths)
        if len(sources) != len(targets):
            raise DataFileError(files.key, files.paths[1], f"{len(targets)} lines, but the "
                                f"source file {files.paths[0].name} has {len(sources)}: "
                                "parallel files must be line-aligned")
        return sources, targets
    table = load_table(files, header, columns)
    out = []
    for column in columns:
        name = column if isinstance(column, str) else str(column)
        values = table.column(name).to_pylist()
        check_values(files, files.paths[0], name, values, header)
        out.append(values)
    return out[0], out[1]


def read_lines(files: SplitFiles, path: Path) -> list[str]:
    """Every line of a plain text file, each non-empty."""
    values = load(files, path, "text", {}).column("text").to_pylist()
    check_values(files, path, "line", values, header=False)
    return values


def load_table(files: SplitFiles, header: bool, columns: tuple):
    """One TSV/CSV/JSONL/Parquet file as an Arrow table whose wanted columns are strings."""
    path, fmt = files.paths[0], files.format
    kwargs: dict = {}
    if fmt in ("tsv", "csv"):
        names = first_row(files, path)
        if header:
            for key, column in zip(("data.source", "data.target"), columns, strict=True):
                if not isinstance(column, str) or column not in names:
                    raise DataFileError(key, path, f"no column {column!r} in the header; it "
                                        f"has {', '.join(map(repr, names))}", line=1)
        else:
            for key, column in zip(("data.source", "data.target"), columns, strict=True):
                if not isinstance(column, int) or not 0 <= column < len(names):
                    raise DataFileError(key, path, f"a column position in [0, {len(names) - 1}] "
                                        f"(data.header=false: columns by position), got "
                                        f"{column!r}", line=1)
            names = [str(i) for i in range(len(names))]
        import datasets

        kwargs = dict(**csv_dialect(fmt), header=0 if header else None,
                      column_names=None if header else names, keep_default_na=False,
                      na_filter=False, skip_blank_lines=False,
                      features=datasets.Features({n: datasets.Value("string") for n in names}))
        if not header:
            kwargs.pop("header")
        return load(files, path, "csv", kwargs)
    table = load(files, path, "json" if fmt == "jsonl" else "parquet", kwargs)
    for key, column in zip(("data.source", "data.target"), columns, strict=True):
        if column not in table.column_names:
            raise DataFileError(key, path, f"no field {column!r}; the file has "
                                f"{', '.join(map(repr, table.column_names)) or 'none'}")
    import pyarrow as pa
    import pyarrow.compute as pc

    return pa.table({c: pc.cast(table.column(c), pa.string()) for c in columns})


def load(files: SplitFiles, path: Path, builder: str, kwargs: dict):
    """``datasets.load_dataset(builder, data_files=path)`` as an Arrow table, its cache in a
    temporary folder (the data module caches the result by content); a file the library
    cannot read is diagnosed line by line (:func:`diagnose`)."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory(prefix="seq2seq-datasets-") as cache:
        try:
            data = datasets.load_dataset(builder, data_files={"split": str(path)}, split="split",
                                         cache_dir=cache, keep_in_memory=True, **kwargs)
        except Exception as err:
            problem, line = diagnose(path, builder, kwargs)
            if problem is None:
                cause = err.__cause__ or err
                problem = f"unreadable as {files.format}: {str(cause).splitlines()[0][:300]}"
            raise DataFileError(files.key, path, problem, line) from None
        return data.data.table


def check_values(files: SplitFiles, path: Path, name: str, values: list, header: bool) -> None:
    """Every value present and non-empty; else the first bad one, by line."""
    offset = 2 if header and files.format in ("tsv", "csv") else 1
    for i, value in enumerate(values):
        if value is None or not value.strip():
            if files.format in ("tsv", "csv"):  # a short row reads as an empty field
                problem, line = diagnose(path, "csv", csv_dialect(files.format))
                if problem is not None:
                    raise DataFileError(files.key, path, problem, line)
            what = "missing" if value is None else "empty"
            field = "the line" if name == "line" else f"{name!r}"
            line = None if files.format == "parquet" else i + offset
            raise DataFileError(files.key, path, f"{field} is {what}"
                                + (f" (row {i + 1})" if line is None else "")
                                + "; every source and target needs text", line)


def csv_dialect(fmt: str) -> dict:
    """How a TSV (no quoting: a quote is text) or CSV (quoted fields) file is split."""
    if fmt == "tsv":
        return {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    return {"delimiter": ",", "quoting": csv.QUOTE_MINIMAL}


def first_row(files: SplitFiles, path: Path) -> list[str]:
    """The first line's fields (the header, or the first pair), UTF-8 checked."""
    with path.open("rb") as f:
        raw = f.readline()
    if not raw.strip():
        raise DataFileError(files.key, path, "the file is empty" if not raw else
                            "the first line is blank; expected "
                            + ("a header" if files.format else "a pair"), line=1 if raw else None)
    try:
        line = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataFileError(files.key, path, f"not UTF-8 (byte {raw[err.start]:#04x} at column "
                            f"{err.start + 1})", line=1) from None
    return next(csv.reader([line.rstrip("\r\n")], **csv_dialect(files.format)))


def diagnose(path: Path, builder: str, kwargs: dict) -> tuple[str | None, int | None]:
    """The first line of ``path`` that is not UTF-8, or (TSV/CSV) has another number of
    fields than the first, or (JSON Lines) is not a JSON object: (what is wrong, line)."""
    if path.stat().st_size == 0:
        return "the file is empty", None
    expected = None
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                return (f"not UTF-8 (byte {raw[err.start]:#04x} at column {err.start + 1})",
                        number)
            if builder == "csv":
                fields = next(csv.reader([line.rstrip("\r\n")],
                                         delimiter=kwargs["delimiter"],
                                         quoting=kwargs["quoting"]), [])
                expected = len(fields) if expected is None else expected
                if len(fields) != expected:
                    found = f"{len(fields)} fields" if line.strip() else "a blank line"
                    return f"{found}, expected {expected} fields (as on line 1)", number
            elif builder == "json" and line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    return f"not a JSON object: {err.msg}", number
                if not isinstance(row, dict):
                    return "not a JSON object", number
    return None, None


def read_dataset(name: str, config: str | None, revision: str | None,
                 columns: tuple) -> dict[str, tuple[list[str], list[str]]]:
    """A Hugging Face dataset's (sources, targets) per split: ``train``, and ``val`` and
    ``test`` where it has them (``validation``/``val``/``dev``, ``test``)."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        data = datasets.load_dataset(name, config, revision=revision)
    except Exception as err:
        words = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise DataFileError("data.dataset", name, "datasets.load_dataset cannot load it: "
                            + words) from None
    found = {ours: next((s for s in theirs if s in data), None) for ours, theirs in
             (("train", ("train",)), ("val", ("validation", "val", "dev")), ("test", ("test",)))}
    if found["train"] is None or (found["val"] is None) != (found["test"] is None):
        raise DataFileError("data.dataset", name, f"a train split, and validation and test "
                            f"splits or neither; it has {', '.join(data) or 'none'}")
    out = {}
    for ours, theirs in found.items():
        if theirs is None:
            continue
        split = data[theirs]
        texts = []
        for key, column in zip(("data.source", "data.target"), columns, strict=True):
            if column not in split.column_names:
                raise DataFileError(key, name, f"no column {column!r} in its {theirs} split; "
                                    f"it has {', '.join(map(repr, split.column_names))}")
            values = split.data.column(column).to_pylist()
            for i, value in enumerate(values):
                if value is None or not str(value).strip():
                    raise DataFileError(key, name, f"row {i + 1} of its {theirs} split: "
                                        f"{column!r} is {'missing' if value is None else 'empty'}"
                                        "; every source and target needs text")
            texts.append([str(v) for v in values])
        out[ours] = (texts[0], texts[1])
    return out


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


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()

"""Reading the user's source/target texts: TSV/CSV/JSONL/Parquet files and line-aligned
text pairs through Hugging Face ``datasets``, or a Hugging Face dataset by name; every
value checked, and a file the library cannot read diagnosed line by line so that the one
line a user sees names the file, the line and what was expected (:class:`DataFileError`)."""

from __future__ import annotations

import csv
import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError, DataFileError
from pipeline.logs import verbose

FORMATS = ("auto", "tsv", "csv", "jsonl", "parquet", "text")
EXTENSIONS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl",
              ".parquet": "parquet"}


@dataclass(frozen=True)
class SplitFiles:
    """Where one split is read from: the setting that named it and its file(s)."""

    key: str
    paths: tuple[Path, ...]
    format: str


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
        if path.is_dir():
            raise DataFileError(key, path, directory_problem(key, path))
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


def directory_problem(key: str, path: Path) -> str:
    """What to say of a directory given where a file belongs: some of its files, and (for
    data.train) that data.dataset reads a Hugging Face dataset folder."""
    names = sorted(p.name for p in path.iterdir() if p.is_file())
    shown = ", ".join(names[:5]) + (f", ... ({len(names)} files)" if len(names) > 5 else "")
    right = f"name one of its files ({shown})" if names else "name a data file"
    if key == "data.train":
        right += f", or read the folder as a Hugging Face dataset: data.dataset={path}"
    return f"a directory, not a file; {right}"


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
        name = str(column)
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
            check_header(files, path, names)
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
        datasets = quiet_datasets()
        kwargs = dict(**csv_dialect(fmt), keep_default_na=False, na_filter=False,
                      skip_blank_lines=False,
                      features=datasets.Features({n: datasets.Value("string") for n in names}),
                      **({"header": 0} if header else {"column_names": names}))
        return load(files, path, "csv", kwargs)
    table = load(files, path, "json" if fmt == "jsonl" else "parquet", kwargs)
    for key, column in zip(("data.source", "data.target"), columns, strict=True):
        if column not in table.column_names:
            raise DataFileError(key, path, f"no field {column!r}; the file has "
                                f"{', '.join(map(repr, table.column_names)) or 'none'}")
    import pyarrow as pa  # noqa: PLC0415 - only to read text files
    import pyarrow.compute as pc  # noqa: PLC0415

    return pa.table({c: pc.cast(table.column(c), pa.string()) for c in columns})


def load(files: SplitFiles, path: Path, builder: str, kwargs: dict):
    """``datasets.load_dataset(builder, data_files=path)`` as an Arrow table, its cache in a
    temporary folder (the data module caches the result by content); a file the library
    cannot read is diagnosed line by line (:func:`diagnose`)."""
    datasets = quiet_datasets()
    with tempfile.TemporaryDirectory(prefix="seq2seq-datasets-") as cache:
        try:
            data = datasets.load_dataset(builder, data_files={"split": str(path)}, split="split",
                                         cache_dir=cache, keep_in_memory=True, **kwargs)
        except Exception as err:
            problem, line = diagnose(path, builder, kwargs)
            if problem is None:
                cause = err.__cause__ or err
                words = " ".join(w.strip() for w in str(cause).splitlines() if w.strip())
                problem = f"unreadable as {files.format}: {words or type(cause).__name__}"
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


def check_header(files: SplitFiles, path: Path, names: list[str]) -> None:
    """Every column of a header has its own name: with one named twice, which of them
    ``data.source``/``data.target`` mean could not be told."""
    for i, name in enumerate(names):
        if name in names[:i]:
            raise DataFileError(files.key, path, f"the header names column {name!r} twice "
                                f"(columns {names.index(name) + 1} and {i + 1}); give every "
                                "column its own name", line=1)


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
                    row = json.loads(line.rstrip("\r\n"))
                except json.JSONDecodeError as err:
                    at = "" if err.msg.endswith(" at") else " at"  # "starting at"
                    return (f"not valid JSON: {err.msg}{at} column {err.colno}; every line "
                            "needs one JSON object"), number
                if not isinstance(row, dict):
                    return (f"a JSON {type(row).__name__}, not an object; every line needs "
                            "one JSON object"), number
    return None, None


def read_dataset(name: str, config: str | None, revision: str | None,
                 columns: tuple) -> dict[str, tuple[list[str], list[str]]]:
    """A Hugging Face dataset's (sources, targets) per split: ``train``, and ``val`` and
    ``test`` where it has them (``validation``/``val``/``dev``, ``test``)."""
    datasets = quiet_datasets()
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


def quiet_datasets():
    """Hugging Face ``datasets``, imported on first use, with neither progress bars nor log
    lines of its own (its loaders log a file they cannot read, by 0-based row, at ERROR):
    what it cannot read is reported here, in one line by file line. ``SEQ2SEQ_VERBOSE=1``
    keeps its lines."""
    import datasets  # noqa: PLC0415 - seconds to import: only to read files

    datasets.disable_progress_bars()
    if not verbose():
        datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    return datasets


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()

"""data=files: every format gives the same splits, tokenizers round-trip, bad files and
settings are named in one line that starts with the setting (the file, its line and column),
and the text metrics are sacrebleu's."""

from __future__ import annotations

import json
import logging
import re

import pandas as pd
import pytest
import sacrebleu

from pipeline.data.datamodule import Seq2SeqDataModule
from pipeline.data.tasks.files import Files
from pipeline.data.tokenize import Chars, from_json, make_tokenizer
from pipeline.data.vocab import EOS, UNK
from pipeline.errors import ConfigError, DataFileError
from pipeline.metrics import CharacterErrorRate, CorpusText, sentence_chrf

PAIRS = [("abc", "cba"), ("hello world", "dlrow olleh"), ("x", "x"), ("abc", "CBA"),
         ("tab, comma", "ammoc ,bat"), ("ünï", "ïnü"), ("q r", "r q"), ("zz", "zz")]
ALL = {"train": 10**7, "val": 10**7, "test": 10**7}


def write_tsv(path, rows, header=("source", "target")):
    lines = ([("\t".join(header))] if header else []) + ["\t".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def by_split(task: Files) -> dict:
    splits = task.build(0, ALL)
    return {name: (s.sources, s.targets, s.references) for name, s in splits.items()}


@pytest.fixture
def formats(tmp_path):
    """The same pairs as TSV (header or not), CSV, JSON Lines, Parquet and parallel text."""
    frame = pd.DataFrame(PAIRS, columns=["source", "target"])
    out = {
        "tsv": dict(train=str(write_tsv(tmp_path / "a.tsv", PAIRS))),
        "tsv-positions": dict(train=str(write_tsv(tmp_path / "b.tsv", PAIRS, header=None)),
                              header=False, source=0, target=1),
        "csv": dict(train=str(tmp_path / "a.csv")),
        "jsonl": dict(train=str(tmp_path / "a.jsonl")),
        "parquet": dict(train=str(tmp_path / "a.parquet")),
        "text": dict(train=[str(tmp_path / "a.src"), str(tmp_path / "a.tgt")]),
    }
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_json(tmp_path / "a.jsonl", orient="records", lines=True, force_ascii=False)
    frame.to_parquet(tmp_path / "a.parquet")
    (tmp_path / "a.src").write_text("\n".join(s for s, _ in PAIRS) + "\n", encoding="utf-8")
    (tmp_path / "a.tgt").write_text("\n".join(t for _, t in PAIRS) + "\n", encoding="utf-8")
    return out


def test_every_format_gives_the_same_splits(formats):
    """Hash split of one file: the same examples whatever the format, every line with the
    same source in one split, its targets its references."""
    seen = {name: by_split(Files(val_fraction=0.3, test_fraction=0.3, **options))
            for name, options in formats.items()}
    first = seen["tsv"]
    assert all(splits == first for splits in seen.values()), seen
    assert sum(len(s[0]) for s in first.values()) == len(PAIRS) - 1  # "abc" twice: one example
    (name,) = [n for n, s in first.items() if "abc" in s[0]]
    sources, targets, refs = first[name]
    i = sources.index("abc")
    assert targets[i] == "cba" and refs[i] == ["cba", "CBA"]


def test_hash_split_is_fixed_by_the_source_and_salt(tmp_path):
    rows = [(f"w{i}", f"t{i}") for i in range(400)]
    path = str(write_tsv(tmp_path / "t.tsv", rows))
    a, b = by_split(Files(train=path)), by_split(Files(train=path))
    assert a == b
    assert 5 <= len(a["test"][0]) <= 40 and 5 <= len(a["val"][0]) <= 40  # about 5 % each
    salted = by_split(Files(train=path, split_salt="other"))
    assert salted["test"][0] != a["test"][0]


def test_given_split_files_are_used_as_they_are(tmp_path):
    files = {n: str(write_tsv(tmp_path / f"{n}.tsv", PAIRS[i:i + 3]))
             for i, n in zip((0, 3, 5), ("train", "val", "test"), strict=True)}
    splits = by_split(Files(**files))
    assert splits["val"][0] == ["abc", "tab, comma", "ünï"]
    assert splits["train"][2] is None  # no source with two targets there


@pytest.mark.parametrize("kind", ["chars", "words", "bpe", "unigram"])
def test_tokenizers_round_trip_and_travel_as_json(kind):
    texts = ["hello world", "the cat sat", "hello there world", "a b c"] * 20
    tok = make_tokenizer(kind, vocab_size=40)
    vocab = tok.fit(texts)
    for text in texts[:4]:
        assert tok.join(tok.tokens(text)) == text
    again = from_json(json.loads(json.dumps(tok.to_json())))
    assert again.tokens("hello world") == tok.tokens("hello world")
    values, lengths = tok.encode(texts[:2], vocab)
    assert lengths.tolist() == [len(tok.tokens(t)) for t in texts[:2]]
    assert values[: lengths[0]].tolist() == vocab.encode(tok.tokens(texts[0]))


def test_vocabulary_bounds_send_the_rest_to_unk():
    tok = Chars()
    vocab = tok.fit(["aaab", "aac", "d"], min_freq=2)
    assert vocab.itos[4:] == ["a"]
    capped = tok.fit(["aaabbc", "bbc", "cc"], max_size=2)
    assert capped.itos[4:] == ["b", "c"]
    values, _ = tok.encode(["abz"], capped)
    assert values.tolist() == [UNK, capped.stoi["b"], UNK]


def test_data_module_encodes_caches_by_content_and_drops_long_pairs(tmp_path, caplog):
    rows = [(f"s{i}", f"t{i}") for i in range(60)] + [("y" * 30, "short")]
    path = write_tsv(tmp_path / "d.tsv", rows)
    options = dict(train=str(path), cache_dir=str(tmp_path / "cache"), max_len=10)
    dm = Seq2SeqDataModule("files", **options)
    with caplog.at_level("INFO"):
        dm.prepare_data()
    spec = dm.spec
    train = dm.dataset("train")
    assert "1 of" in caplog.text and "data.max_len=10" in caplog.text
    assert all(len(train[i]["src"]) <= 10 for i in range(len(train)))
    assert int(train[0]["tgt"][-1]) == EOS
    assert spec.text["tokenizer"] == {"kind": "chars"} and dm.tokenizers["source"]["kind"]
    assert dm.dataset("val")[0]["texts"]  # reference texts travel for the text metrics
    key = dm.cache_key
    write_tsv(path, rows[:-1] + [("edited", "x")])
    assert Seq2SeqDataModule("files", **options).cache_key != key


BAD = {
    "missing file": (None, "no such file", None),
    "empty file": ("", "empty", None),
    "extra column": ("source\ttarget\nab\tba\ncd\tdc\textra\n", "3 fields, expected 2 fields", 3),
    "short row": ("source\ttarget\nab\tba\ncd\n", "1 fields, expected 2 fields", 3),
    "empty target": ("source\ttarget\nab\tba\ncd\t\n", "empty", 3),
    "blank line": ("source\ttarget\nab\tba\n\ncd\tdc\n", "a blank line, expected 2", 3),
    "not utf-8": (b"source\ttarget\nab\tba\nc\xffd\tdc\n", "not UTF-8", 3),
    "no such column": ("src\ttarget\nab\tba\n", "no column 'source'", 1),
    "column named twice": ("source\ttarget\ttarget\nab\tba\tab\n", "the header names column "
                           "'target' twice (columns 2 and 3); give every column its own name", 1),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_file_is_named_with_its_line_and_what_was_expected(tmp_path, case):
    content, words, line = BAD[case]
    path = tmp_path / "bad.tsv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(DataFileError) as err:
        Files(train=str(path)).build(0, ALL)
    message = str(err.value)
    key = "data.source" if case == "no such column" else "data.train"
    assert message.startswith(f"{key}: ") and str(path) in message and words in message
    assert err.value.line == line and "\n" not in message
    if line:
        assert f"line {line}:" in message


def test_bad_jsonl_and_parallel_files_are_named(tmp_path):
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"source": "a", "target": "b"}\n{"source": "c"}\n')
    with pytest.raises(DataFileError, match=r"d.jsonl, line 2: 'target' is missing"):
        Files(train=str(jsonl)).build(0, ALL)
    jsonl.write_text('{"source": "a", "target": "b"}\n{"source": "c", "tgt": 1}\n')
    with pytest.raises(DataFileError, match="line 2: 'target' is missing"):
        Files(train=str(jsonl)).build(0, ALL)
    src, tgt = tmp_path / "x.src", tmp_path / "x.tgt"
    src.write_text("a\nb\nc\n")
    tgt.write_text("a\nb\n")
    with pytest.raises(DataFileError, match="2 lines, but the source file x.src has 3"):
        Files(train=[str(src), str(tgt)]).build(0, ALL)


def test_a_csv_header_naming_a_column_twice_is_refused(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("target,source,target\nba,ab,x\ndc,cd,y\n")
    with pytest.raises(DataFileError) as err:
        Files(train=str(path), val=str(path), test=str(path)).build(0, ALL)
    assert str(err.value) == (f"data.train: {path}, line 1: the header names column 'target' "
                              "twice (columns 1 and 3); give every column its own name")


def test_a_directory_given_as_a_data_file_is_called_one(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    write_tsv(folder / "train.tsv", PAIRS)
    with pytest.raises(DataFileError) as err:
        Files(train=str(folder))
    assert str(err.value) == (f"data.train: {folder}: a directory, not a file; name one of its "
                              "files (train.tsv), or read the folder as a Hugging Face "
                              f"dataset: data.dataset={folder}")
    with pytest.raises(DataFileError) as err:
        Files(train=str(folder / "train.tsv"), val=str(tmp_path), test=str(tmp_path))
    assert str(err.value) == f"data.val: {tmp_path}: a directory, not a file; name a data file"


@pytest.mark.parametrize("line, reason", [
    ('{"source": "c", "target" "d"}', "not valid JSON: Expecting ':' delimiter at column 26"),
    ('{"source": "c", "targ', "not valid JSON: Unterminated string starting at column 17"),
    ('["c", "d"]', "a JSON list, not an object"),
])
def test_a_bad_json_line_is_named_by_line_and_column_and_nothing_else_is_said(
        tmp_path, caplog, line, reason):
    """The full reason by the file's line and column, and none of the library's own lines
    (its row numbers count from 0)."""
    path = tmp_path / "d.jsonl"
    path.write_text('{"source": "a", "target": "b"}\n' * 3 + line + "\n")
    with caplog.at_level(logging.INFO), pytest.raises(DataFileError) as err:
        Files(train=str(path)).build(0, ALL)
    assert str(err.value) == f"data.train: {path}, line 4: {reason}; every line needs one JSON " \
                             "object"
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def test_a_bad_files_setting_starts_its_line(compose_cfg, tmp_path):
    """data=files settings and files are judged with the other settings, before Hydra
    builds anything: the line starts with the setting and its reason, not the overrides."""
    from pipeline.config import validate

    path = write_tsv(tmp_path / "d.tsv", PAIRS)
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg("data=files", f"data.train={path}", "data.tokenizer=nonsense"))
    assert str(err.value) == ("data.tokenizer='nonsense' is invalid: one of chars, words, bpe, "
                              "unigram")
    with pytest.raises(DataFileError, match=f"^data\\.train: {tmp_path}: a directory, not a file"):
        validate(compose_cfg("data=files", f"data.train={tmp_path}"))
    validate(compose_cfg("data=files", f"data.train={path}"))


def test_a_subword_vocabulary_smaller_than_asked_is_noted(tmp_path, caplog):
    path = str(write_tsv(tmp_path / "d.tsv", PAIRS))
    splits = Files(train=path, val=path, test=path).build(0, ALL)
    with caplog.at_level(logging.INFO, logger="pipeline"):
        Files(train=path, val=path, test=path, tokenizer="bpe").vocabularies(splits)
        Files(train=path, val=path, test=path, tokenizer="bpe",
              subword_vocab_size=8).vocabularies(splits)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    for side, line in zip(("source", "target"), lines, strict=True):
        assert re.fullmatch(f"data: the {side} side's bpe model learnt \\d+ pieces, fewer than "
                            "data.subword_vocab_size=8000: its training text has too few "
                            "distinct pieces for more", line), line


def test_bad_settings_name_their_key(tmp_path):
    path = str(write_tsv(tmp_path / "d.tsv", PAIRS))
    for options, key in [(dict(tokenizer="spaces"), "data.tokenizer"),
                         (dict(val=path), "data.val"), (dict(format="xml"), "data.format"),
                         (dict(val_fraction=0.6, test_fraction=0.5), "data.val_fraction"),
                         (dict(header=False, source="source"), "data.source")]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            Files(train=path, **options).build(0, ALL)
    with pytest.raises(DataFileError, match="the (val|test) split is empty"):
        Files(train=str(write_tsv(tmp_path / "one.tsv", PAIRS[:1]))).build(0, ALL)


def test_corpus_scores_are_sacrebleus_with_several_references():
    hyps = ["the cat sat on the mat", "a dog", "hello"]
    refs = [["the cat sat on a mat", "a cat sat on the mat"], ["a dog ran"], ["hello"]]
    text = CorpusText()
    text.update(hyps[:2], refs[:2])
    text.update(hyps[2:], refs[2:])
    streams = [[r[0] for r in refs], [r[1] if len(r) > 1 else None for r in refs]]
    scores = text.compute()
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, streams).score)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, streams).score)
    assert sentence_chrf("a dog", ["a dog ran", "a dog"]) == 1.0
    cer = CharacterErrorRate()
    cer.update(["abcd", "xy"], [["abce", "zzzz"], ["xy"]])
    assert float(cer.compute()) == pytest.approx(1 / 6)


def test_bleu_of_character_level_targets_counts_characters():
    """13a sees a target without spaces as one word, whose BLEU is 0 for anything but an
    exact match; on characters (the chars tokenizer's targets) near misses score."""
    hyps, refs = ["seventy-two", "twelve", "fourty"], [["seventy-three"], ["twelve"], ["forty"]]
    scores = {}
    for kind in ("chars", "words", "bpe", None):
        text = CorpusText(kind)
        text.update(hyps, refs)
        scores[kind] = text.compute()["bleu"]
    streams = [[r[0] for r in refs]]
    assert scores["chars"] == pytest.approx(
        sacrebleu.corpus_bleu(hyps, streams, tokenize="char").score)
    assert scores["chars"] > 50
    assert scores["words"] == scores["bpe"] == scores[None] == pytest.approx(
        sacrebleu.corpus_bleu(hyps, streams).score)


def test_a_hugging_face_dataset_folder_gives_the_same_splits(tmp_path):
    """data.dataset takes what datasets.load_dataset takes (here a local folder; a Hub name
    where the network allows): train/validation/test by their file names."""
    folder = tmp_path / "my-dataset"
    folder.mkdir()
    chunks = {"train": PAIRS[:4], "validation": PAIRS[4:6], "test": PAIRS[6:]}
    for split, rows in chunks.items():
        pd.DataFrame(rows, columns=["source", "target"]).to_csv(folder / f"{split}.csv",
                                                                index=False)
        write_tsv(tmp_path / f"{split}.tsv", rows)
    from_folder = by_split(Files(dataset=str(folder)))
    from_files = by_split(Files(**{s: str(tmp_path / f"{n}.tsv") for s, n in
                                   (("train", "train"), ("val", "validation"),
                                    ("test", "test"))}))
    assert from_folder == from_files
    first = Files(dataset=str(folder)).fingerprint()
    (folder / "test.csv").write_text("source,target\nq r,r q\nnew,wen\n")
    assert Files(dataset=str(folder)).fingerprint() != first
    with pytest.raises(DataFileError, match="no column 'src' in its train split"):
        Files(dataset=str(folder), source="src").build(0, ALL)
    with pytest.raises(ConfigError, match="data.dataset"):
        Files(dataset=str(folder), train=str(tmp_path / "train.tsv"))
    with pytest.raises(DataFileError, match="datasets.load_dataset cannot load it"):
        Files(dataset=str(tmp_path / "nothing-here")).build(0, ALL)


def test_a_dataset_whose_training_pairs_are_all_too_long_is_named(tmp_path):
    folder = tmp_path / "long"
    folder.mkdir()
    for split in ("train", "validation", "test"):
        pd.DataFrame([("abcdef", "fedcba")], columns=["source", "target"]).to_csv(
            folder / f"{split}.csv", index=False)
    dm = Seq2SeqDataModule("files", dataset=str(folder), max_len=3)
    with pytest.raises(DataFileError, match=r"^data\.dataset: .*long: every training pair"):
        dm.prepare_data()

"""Text to symbols and back, per side: characters, whitespace-separated words, or a subword
model (BPE or unigram, Hugging Face ``tokenizers``) learnt from the training split only.

A tokenizer also learns the side's :class:`Vocab` from the training texts (minimum count,
maximum size; what it leaves out reads as ``<unk>``), encodes many texts at once into flat
id arrays, and travels with the model as JSON (``tokenizers.json``) so that predicting and
serving split and join text exactly as training did.
"""

from __future__ import annotations

import itertools
import json
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.data.vocab import SPECIALS, UNK, Vocab
from pipeline.errors import DamagedFile
from pipeline.files import why_damaged

TOKENIZERS = ("chars", "words", "bpe", "unigram")
TOKENIZER_FILE = "tokenizers.json"
# A subword model learns from at most this many training texts (SentencePiece's
# input_sentence_size does the same): more rarely changes the pieces, and costs minutes.
SUBWORD_SAMPLE = 200_000
ENCODE_CHUNK = 50_000


class Tokenizer(ABC):
    """Splits a text into symbols, joins symbols into a text, and learns a vocabulary."""

    kind: str

    @abstractmethod
    def tokens(self, text: str) -> list[str]:
        """The symbols of one text."""

    @abstractmethod
    def join(self, symbols: Sequence[str]) -> str:
        """The text the symbols stand for (the inverse of :meth:`tokens`)."""

    def fit(self, texts: Sequence[str], min_freq: int = 1, max_size: int | None = None) -> Vocab:
        """The vocabulary of ``texts`` (the training split): symbols seen at least
        ``min_freq`` times, the ``max_size`` most frequent (ties by symbol), sorted."""
        counts = Counter(itertools.chain.from_iterable(self.tokens(t) for t in texts))
        return Vocab(most_frequent(counts, min_freq, max_size))

    def encode(self, texts: Sequence[str], vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
        """Every text's ids, concatenated, and each text's length (unknown symbols: UNK)."""
        ids = [vocab.encode(self.tokens(t)) for t in texts]
        values = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64)
        return values, np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))

    def to_json(self) -> dict:
        return {"kind": self.kind}


class Chars(Tokenizer):
    """Every character is a symbol (spaces too); joined without separator."""

    kind = "chars"

    def tokens(self, text: str) -> list[str]:
        return list(text)

    def join(self, symbols: Sequence[str]) -> str:
        return "".join(symbols)

    def fit(self, texts, min_freq=1, max_size=None) -> Vocab:
        points, counts = np.unique(codepoints(texts), return_counts=True)
        return Vocab(most_frequent(dict(zip(map(chr, points.tolist()), counts.tolist(),
                                            strict=True)), min_freq, max_size))

    def encode(self, texts, vocab):
        points = codepoints(texts)
        known = np.array([ord(s) for s in vocab.itos[len(SPECIALS):]], dtype=np.uint32)
        order = np.argsort(known)
        at = np.searchsorted(known[order], points).clip(max=max(len(known) - 1, 0))
        hit = known[order][at] == points if len(known) else np.zeros(len(points), bool)
        values = np.where(hit, order[at] + len(SPECIALS), UNK).astype(np.int64)
        return values, np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))


class Words(Tokenizer):
    """Whitespace-separated words are the symbols; joined with one space."""

    kind = "words"

    def tokens(self, text: str) -> list[str]:
        return text.split()

    def join(self, symbols: Sequence[str]) -> str:
        return " ".join(symbols)


class Subword(Tokenizer):
    """A BPE or unigram model of Hugging Face ``tokenizers``, SentencePiece-style (spaces
    kept as ``▁`` so that joining restores the text), learnt by :meth:`fit`."""

    def __init__(self, kind: str, vocab_size: int = 8000, model: str | None = None):
        # Imported only for subword tokenizers.
        from tokenizers import Tokenizer as HFTokenizer  # noqa: PLC0415

        self.kind, self.vocab_size = kind, vocab_size
        self.model = None if model is None else HFTokenizer.from_str(model)

    def fit(self, texts, min_freq=1, max_size=None) -> Vocab:
        # Imported only for subword tokenizers.
        from tokenizers import Tokenizer as HFTokenizer  # noqa: PLC0415
        from tokenizers import decoders, models, pre_tokenizers, trainers  # noqa: PLC0415

        size = min(self.vocab_size, max_size or self.vocab_size)
        unk = SPECIALS[UNK]
        if self.kind == "bpe":
            model = HFTokenizer(models.BPE(unk_token=unk))
            trainer = trainers.BpeTrainer(vocab_size=size, min_frequency=min_freq,
                                          special_tokens=[unk], show_progress=False)
        else:
            model = HFTokenizer(models.Unigram())
            trainer = trainers.UnigramTrainer(vocab_size=size, special_tokens=[unk],
                                              unk_token=unk, show_progress=False)
        model.pre_tokenizer = pre_tokenizers.Metaspace()
        model.decoder = decoders.Metaspace()
        step = max(1, len(texts) // SUBWORD_SAMPLE)
        model.train_from_iterator(texts[::step], trainer)
        self.model = model
        pieces = sorted(model.get_vocab().items(), key=lambda kv: kv[1])
        return Vocab(p for p, _ in pieces if p != unk)

    def tokens(self, text: str) -> list[str]:
        return self.model.encode(text, add_special_tokens=False).tokens

    def join(self, symbols: Sequence[str]) -> str:
        return self.model.decoder.decode(list(symbols))

    def encode(self, texts, vocab):
        table = np.full(self.model.get_vocab_size(), UNK, dtype=np.int64)
        for piece, i in self.model.get_vocab().items():
            table[i] = vocab.stoi.get(piece, UNK)
        values, lengths = [], []
        for start in range(0, len(texts), ENCODE_CHUNK):
            batch = self.model.encode_batch_fast(list(texts[start:start + ENCODE_CHUNK]),
                                                 add_special_tokens=False)
            ids = [e.ids for e in batch]
            lengths.append(np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)))
            values.append(table[np.fromiter(itertools.chain.from_iterable(ids), np.int64)])
        if not values:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(values), np.concatenate(lengths)

    def to_json(self) -> dict:
        return {"kind": self.kind, "vocab_size": self.vocab_size, "model": self.model.to_str()}


def codepoints(texts: Sequence[str]) -> np.ndarray:
    """Every character of ``texts``, in order, as Unicode code points."""
    return np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)


def most_frequent(counts: dict[str, int], min_freq: int, max_size: int | None) -> list[str]:
    """The symbols counted at least ``min_freq`` times, at most ``max_size`` of the most
    frequent (ties broken by symbol), in sorted order."""
    kept = sorted((s for s, c in counts.items() if c >= min_freq and s not in SPECIALS),
                  key=lambda s: (-counts[s], s))
    return sorted(kept[:max_size] if max_size else kept)


def make_tokenizer(kind: str, vocab_size: int = 8000) -> Tokenizer:
    """A new, unfitted tokenizer of ``kind`` (one of :data:`TOKENIZERS`)."""
    if kind == "chars":
        return Chars()
    if kind == "words":
        return Words()
    if kind in ("bpe", "unigram"):
        return Subword(kind, vocab_size)
    raise ValueError(f"unknown tokenizer {kind!r}; known: {', '.join(TOKENIZERS)}")


def from_json(spec: dict) -> Tokenizer:
    """The tokenizer that :meth:`Tokenizer.to_json` described."""
    if spec["kind"] in ("bpe", "unigram"):
        return Subword(spec["kind"], spec.get("vocab_size", 8000), spec["model"])
    return make_tokenizer(spec["kind"])


def tokenizers_json(source: Tokenizer, target: Tokenizer) -> dict:
    """The content of ``tokenizers.json``."""
    return {"source": source.to_json(), "target": target.to_json()}


def tokenizers_from_json(spec: dict | None) -> tuple[Tokenizer, Tokenizer]:
    """(source, target) tokenizers as :func:`tokenizers_json` described them; without a
    description (the built-in tasks), whitespace-separated symbols on both sides."""
    if spec is None:
        return Words(), Words()
    return from_json(spec["source"]), from_json(spec["target"])


def load_tokenizers(path: Path | None) -> tuple[Tokenizer, Tokenizer]:
    """(source, target) tokenizers from a ``tokenizers.json`` (:func:`tokenizers_from_json`;
    without one, whitespace-separated symbols)."""
    if path is None:
        return tokenizers_from_json(None)

    try:  # a file that is not whole is named in one line (predict, serving)
        return tokenizers_from_json(json.loads(Path(path).read_text()))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise DamagedFile(path, why_damaged(err)) from err


class TextCodec:
    """One side's text to ids and back: its tokenizer and vocabulary."""

    def __init__(self, tokenizer: Tokenizer, vocab: Vocab):
        self.tokenizer, self.vocab = tokenizer, vocab

    def tokens(self, text: str) -> list[str]:
        return self.tokenizer.tokens(text)

    def encode(self, text: str) -> list[int]:
        return self.vocab.encode(self.tokenizer.tokens(text))

    def decode(self, ids) -> str:
        """The text of ids up to the first EOS (padding and BOS dropped)."""
        return self.tokenizer.join(self.vocab.decode(ids))

    def unknown(self, text: str) -> list[str]:
        """The symbols of ``text`` the vocabulary lacks (they would read as <unk>)."""
        return self.vocab.unknown(self.tokenizer.tokens(text))

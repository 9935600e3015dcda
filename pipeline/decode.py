"""Decode with a trained model: symbol sequences in, symbols and attention out (the
report's samples and heatmaps), and :class:`Translator`, texts in, texts out (predicting
and serving)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate

from pipeline.data.tokenize import TOKENIZER_FILE, TextCodec, load_tokenizers, tokenizers_json
from pipeline.data.vocab import (
    PAD,
    SPECIALS,
    VOCAB_FILE,
    Vocab,
    load_vocabularies,
    vocabularies_json,
)
from pipeline.errors import InputError
from pipeline.models import EncoderDecoder

NET_FILE, WEIGHTS_FILE = "net.json", "weights.pt"


@dataclass
class Decoded:
    """One decoded example: symbols in, the reference, the prediction, attention (T x S)."""

    source: list[str]
    target: list[str] | None
    prediction: list[str]
    attention: np.ndarray | None


def decode(
    net: EncoderDecoder, sources: list[list[str]], vocabs: tuple[Vocab, Vocab],
    max_len: int, beam_size: int = 1, targets: list[list[str]] | None = None,
) -> list[Decoded]:
    """Greedy or beam decoding of symbol sequences, with the attention of every step."""
    src_vocab, tgt_vocab = vocabs
    ids = [torch.tensor(src_vocab.encode(s)) for s in sources]
    lengths = torch.tensor([len(x) for x in ids])
    src = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True)
    gen = net.generate(src, lengths, max_len=max_len, beam_size=beam_size,
                       return_attention=True)
    out = []
    for i, source in enumerate(sources):
        prediction = tgt_vocab.decode(gen.sequences[i])
        attention = None
        if gen.attention is not None:
            attention = gen.attention[i, : len(prediction) + 1, : len(source)].numpy()
        out.append(Decoded(source, None if targets is None else targets[i], prediction,
                           attention))
    return out


# Known symbols shown at most when an input has unknown ones.
SHOWN_SYMBOLS = 100


def shown(symbol: str) -> str:
    """A symbol as a line shows it: quoted where it holds white space or cannot be seen."""
    plain = symbol.isprintable() and not any(c.isspace() for c in symbol)
    return symbol if plain else repr(symbol)


class Translator:
    """Texts in, texts out: a trained network, each side's :class:`TextCodec`, and the
    longest output it may write. Inputs are decoded in batches of similar length.

    Saved as files in one folder (:meth:`save`, :meth:`load`): the network's settings
    (``net.json``) and weights (``weights.pt``), ``vocabularies.json`` and
    ``tokenizers.json`` (where it is missing, both sides are whitespace-separated symbols).
    """

    def __init__(self, net: EncoderDecoder, source: TextCodec, target: TextCodec,
                 max_len: int, settings: dict | None = None):
        self.net, self.source, self.target = net.eval(), source, target
        self.max_len, self.settings = max_len, settings

    def check(self, texts: list[str], unknown: str = "error") -> None:
        """Refuse no texts, an empty text and (``unknown="error"``) a text with symbols
        outside the vocabulary: the first such text, by its index."""
        if not texts:
            raise InputError("no inputs: give one or more texts")
        for i, text in enumerate(texts):
            if not self.source.tokens(str(text)):
                raise InputError("is empty; every input needs at least one symbol", i,
                                 len(texts))
        if unknown == "unk":
            return
        missing = [self.source.unknown(str(t)) for t in texts]
        bad = [i for i, m in enumerate(missing) if m]
        if bad:
            known = self.source.vocab.itos[len(SPECIALS):]
            listed = " ".join(map(shown, known[:SHOWN_SYMBOLS]))
            if len(known) > SHOWN_SYMBOLS:
                listed += f" ... ({len(known)} in all)"
            others = len(bad) - 1
            more = (f"; {others} later input{'s have' if others > 1 else ' has'} such symbols "
                    "too" if others else "")
            raise InputError(f"has symbols outside the model's vocabulary: "
                             f"{' '.join(map(shown, missing[bad[0]]))} (it knows: {listed})"
                             f"{more}; use unknown=unk to read them as <unk>", bad[0],
                             len(texts))

    @torch.inference_mode()
    def translate(self, texts: list[str], beam_size: int = 1,
                  batch_size: int = 256) -> list[str]:
        """Each text's prediction, in order (greedy, or beam search with ``beam_size``)."""
        ids = [self.source.encode(t) for t in texts]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: list[str] = [""] * len(ids)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            rows = [torch.tensor(ids[i]) for i in chunk]
            src = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=PAD)
            lengths = torch.tensor([len(r) for r in rows])
            gen = self.net.generate(src, lengths, max_len=self.max_len, beam_size=beam_size)
            for i, row in zip(chunk, gen.sequences.tolist(), strict=True):
                out[i] = self.target.decode(row)
        return out

    def save(self, folder: Path) -> dict[str, Path]:
        """Write the model's files into ``folder``; returns them by name."""
        folder.mkdir(parents=True, exist_ok=True)
        files = {"net": folder / NET_FILE, "weights": folder / WEIGHTS_FILE,
                 "vocabularies": folder / VOCAB_FILE, "tokenizers": folder / TOKENIZER_FILE}
        files["net"].write_text(json.dumps({"net": self.settings, "max_len": self.max_len}))
        torch.save(self.net.state_dict(), files["weights"])
        files["vocabularies"].write_text(json.dumps(
            vocabularies_json(self.source.vocab, self.target.vocab)))
        files["tokenizers"].write_text(json.dumps(tokenizers_json(self.source.tokenizer,
                                                                   self.target.tokenizer)))
        return files

    @classmethod
    def load(cls, files: dict[str, str]) -> Translator:
        """The model :meth:`save` wrote (``files`` by name, ``tokenizers`` optional)."""
        settings = json.loads(Path(files["net"]).read_text())
        net = instantiate(settings["net"], _convert_="all")
        net.load_state_dict(torch.load(files["weights"], map_location="cpu", weights_only=True))
        vocabs = load_vocabularies(Path(files["vocabularies"]))
        tokenizers = load_tokenizers(files.get("tokenizers"))
        return cls(net, TextCodec(tokenizers[0], vocabs[0]), TextCodec(tokenizers[1], vocabs[1]),
                   settings["max_len"], settings["net"])

"""Symbols in, symbols out: decode source sequences with a trained model and its
vocabularies (the report's samples and heatmaps, and ``pipeline.predict``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.data.vocab import Vocab
from pipeline.models import EncoderDecoder


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

"""Decode inputs with a trained model: from a data set (for reports) or the command line.

    python -m pipeline.predict model_uri=models:/seq2seq-reverse@champion \\
        'inputs=["1 2 3 4", "7 7 1"]' eval.beam_size=5

Inputs are space-separated source symbols; the vocabularies travel with the logged model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

import pipeline.config  # noqa: F401  (registers the config resolvers)
from pipeline.data.vocab import Vocab
from pipeline.models import EncoderDecoder

VOCAB_FILE = "vocabularies.json"


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


def load(model_uri: str) -> tuple[EncoderDecoder, tuple[Vocab, Vocab]]:
    """A logged model and its vocabularies from any MLflow model URI."""
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(model_uri))
    net = mlflow.pytorch.load_model(str(local))
    itos = json.loads(next(local.rglob(VOCAB_FILE)).read_text())
    return net.eval(), (Vocab(itos["source"][4:]), Vocab(itos["target"][4:]))


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    """Print one prediction per input."""
    import mlflow

    mlflow.set_tracking_uri(cfg.tracking_uri)
    net, vocabs = load(cfg.model_uri)
    sources = [s.split() for s in cfg.inputs]
    for d in decode(net, sources, vocabs, cfg.max_len, cfg.eval.beam_size):
        print(" ".join(d.source), "->", " ".join(d.prediction))


if __name__ == "__main__":
    main()

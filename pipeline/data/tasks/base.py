"""What every task provides: its kind, its splits and the sizes its model needs."""

from __future__ import annotations

import hashlib
import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from pipeline.data.dataset import Packed
from pipeline.data.vocab import Vocab

SPLITS = ("train", "val", "test")


def split_rank(text: str, salt: str) -> float:
    """A fixed pseudo-random number in [0, 1) for ``text``: its salted BLAKE2b hash
    (``salt`` at most 16 bytes). Splits cut by it keep equal texts together."""
    digest = hashlib.blake2b(text.encode(), digest_size=8, salt=salt.encode()).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class TokenSplit:
    """Parallel lists of source and target symbol sequences.

    ``references`` optionally holds, per example, every acceptable target (e.g. all
    pronunciations of a word); metrics count a prediction right if it matches any.
    """

    sources: list[list[str]]
    targets: list[list[str]]
    references: list[list[list[str]]] | None = None


@dataclass
class VectorSplit:
    """sources: (N, S, input_dim) and targets: (N, T, output_dim) float arrays."""

    sources: np.ndarray
    targets: np.ndarray
    extra: dict = field(default_factory=dict)


class Task(ABC):
    """A data set family. ``build`` must be deterministic in ``seed`` and the settings."""

    kind: ClassVar[str]

    @abstractmethod
    def build(self, seed: int, sizes: dict[str, int]) -> dict[str, TokenSplit | VectorSplit]:
        """The train/val/test splits."""

    def fingerprint(self) -> str | None:
        """A digest of the data the task reads beyond its settings (the user's files), for
        the cache key; None where the settings alone fix the data."""
        return None

    def sources(self) -> dict[str, dict] | None:
        """Each split's files and content digest (the run's dataset inputs), where it is
        read from files; None where the splits are logged as arrays."""
        return None

    def tokenizers_json(self) -> dict | None:
        """What ``tokenizers.json`` holds, for a task that splits text itself."""
        return None


class TokenTask(Task):
    """A task over symbol sequences; vocabularies come from ``vocabularies``."""

    kind = "tokens"

    def vocabularies(self, splits: dict[str, TokenSplit]) -> tuple[Vocab, Vocab]:
        """Source and target vocabularies (default: every symbol seen in train)."""
        train = splits["train"]
        src = sorted({s for seq in train.sources for s in seq})
        tgt = sorted({s for seq in train.targets for s in seq})
        return Vocab(src), Vocab(tgt)

    def encode(self, name: str, split: TokenSplit, vocabs: tuple[Vocab, Vocab]) -> dict:
        """A split as ids: ``src``, ``tgt`` (EOS-terminated) and, where the task has them,
        every reference (``refs``, grouped per example by ``ref_offsets``)."""
        src_vocab, tgt_vocab = vocabs
        entry = {
            "src": Packed([src_vocab.encode(s) for s in split.sources]),
            "tgt": Packed([tgt_vocab.encode(t, eos=True) for t in split.targets]),
        }
        if split.references is not None:
            entry["refs"] = Packed(
                [tgt_vocab.encode(r, eos=True) for refs in split.references for r in refs]
            )
            entry["ref_offsets"] = torch.tensor(
                [0, *itertools.accumulate(len(refs) for refs in split.references)]
            )
        return entry


class VectorTask(Task):
    """A task over sequences of float vectors, trained with mse."""

    kind = "vectors"

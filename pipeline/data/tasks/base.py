"""What every task provides: its kind, its splits and the sizes its model needs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from pipeline.data.vocab import Vocab

SPLITS = ("train", "val", "test")


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


class TokenTask(Task):
    """A task over symbol sequences; vocabularies come from ``vocabularies``."""

    kind = "tokens"

    def vocabularies(self, splits: dict[str, TokenSplit]) -> tuple[Vocab, Vocab]:
        """Source and target vocabularies (default: every symbol seen in train)."""
        train = splits["train"]
        src = sorted({s for seq in train.sources for s in seq})
        tgt = sorted({s for seq in train.targets for s in seq})
        return Vocab(src), Vocab(tgt)


class VectorTask(Task):
    """A task over sequences of float vectors, trained with mse."""

    kind = "vectors"

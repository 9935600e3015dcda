"""Random token sequences and a fixed function of them: copy, reverse, sort."""

from __future__ import annotations

import numpy as np

from pipeline.data.tasks.base import SPLITS, TokenSplit, TokenTask
from pipeline.data.vocab import Vocab


class SyntheticTask(TokenTask):
    """Sequences of ``min_len..max_len`` symbols drawn from ``vocab_size`` symbols.

    Each split comes from its own random stream (seed, split), and no validation or
    test sequence appears in train (nor a test sequence in validation).
    """

    def __init__(self, vocab_size: int = 10, min_len: int = 1, max_len: int = 10):
        self.vocab_size, self.min_len, self.max_len = vocab_size, min_len, max_len
        self.symbols = [str(i) for i in range(vocab_size)]

    def transform(self, seq: list[str]) -> list[str]:
        raise NotImplementedError

    def build(self, seed: int, sizes: dict[str, int]) -> dict[str, TokenSplit]:
        seen: set[tuple[str, ...]] = set()
        splits = {}
        for i, name in enumerate(SPLITS):
            rng = np.random.default_rng([seed, i])
            sources = []
            for _ in range(100 * sizes[name] + 1000):
                if len(sources) == sizes[name]:
                    break
                n = int(rng.integers(self.min_len, self.max_len + 1))
                seq = tuple(self.symbols[j] for j in rng.integers(0, self.vocab_size, n))
                if name == "train" or seq not in seen:
                    sources.append(list(seq))
                    if name != "train":
                        seen.add(seq)
            if len(sources) < sizes[name]:
                raise ValueError(
                    f"cannot draw {sizes[name]} distinct {name} sequences of length "
                    f"{self.min_len}..{self.max_len} over {self.vocab_size} symbols"
                )
            seen.update(tuple(s) for s in sources)
            splits[name] = TokenSplit(sources, [self.transform(s) for s in sources])
        return splits

    def vocabularies(self, splits):
        return Vocab(self.symbols), Vocab(self.symbols)


class Copy(SyntheticTask):
    """Output the input."""

    def transform(self, seq):
        return list(seq)


class Reverse(SyntheticTask):
    """Output the input reversed."""

    def transform(self, seq):
        return seq[::-1]


class Sort(SyntheticTask):
    """Output the input sorted (by symbol id)."""

    def transform(self, seq):
        return sorted(seq, key=int)

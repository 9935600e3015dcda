"""Addition of two integers written as characters: "123+45" -> "168"."""

from __future__ import annotations

import numpy as np

from pipeline.data.tasks.base import SPLITS, TokenSplit, TokenTask
from pipeline.data.vocab import Vocab


class Addition(TokenTask):
    """Questions ``a+b`` with answers ``a + b``, one character per symbol.

    Each operand first draws its number of digits uniformly from ``1..digits``, then its
    value uniformly among the numbers with that many digits (0-9 for one digit), so short
    and long operands are equally common. No padding is added. With ``reverse_input`` the
    source string is reversed ("54+321" for 123+45), the trick of the Keras addition_rnn
    example; the target is never reversed.

    Every question occurs once in the whole data set: each split comes from its own random
    stream (seed, split) and draws without replacement, skipping questions already drawn,
    so no validation or test question is in train and no test question is in validation.
    Short questions are few (100 with two one-digit operands), so train may take them all.
    Asking for more questions than the ``100**digits`` that exist raises ValueError.
    """

    def __init__(self, digits: int = 3, reverse_input: bool = False):
        if not 1 <= digits <= 9:
            raise ValueError(f"digits must be between 1 and 9, got {digits}")
        self.digits, self.reverse_input = digits, reverse_input

    @property
    def num_questions(self) -> int:
        """How many distinct questions there are."""
        return 10 ** (2 * self.digits)

    def _operands(self, rng: np.random.Generator, n: int) -> np.ndarray:
        k = rng.integers(1, self.digits + 1, size=n)
        return rng.integers(np.where(k == 1, 0, 10 ** (k - 1)), 10**k)

    def _probability(self, values: np.ndarray) -> np.ndarray:
        """How likely ``_operands`` draws each of ``values``."""
        k = 1 + sum(values >= 10**j for j in range(1, self.digits))
        return np.where(k == 1, 0.1, 1 / (9 * 10.0 ** (k - 1))) / self.digits

    def _draw(self, rng: np.random.Generator, n: int, seen: set[int]) -> list[int]:
        """``n`` new questions (codes ``a * 10**digits + b``), drawn without replacement.

        Up to a million questions are enumerated and ranked by exponential keys
        (Efraimidis-Spirakis), which is exact even when nearly all are taken; larger
        spaces are sampled by rejection.
        """
        base = 10**self.digits
        if self.num_questions <= 10**6:
            codes = np.arange(self.num_questions)
            weight = self._probability(codes // base) * self._probability(codes % base)
            keys = rng.exponential(size=len(codes)) / weight
            keys[list(seen)] = np.inf
            first = np.argpartition(keys, n)[:n] if n < len(keys) else np.arange(len(keys))
            return [int(c) for c in first[np.argsort(keys[first])]]
        out: dict[int, None] = {}
        for _ in range(100 * n // 1000 + 100):
            if len(out) >= n:
                break
            codes = self._operands(rng, 1000) * base + self._operands(rng, 1000)
            out.update((int(c), None) for c in codes if int(c) not in seen)
        if len(out) < n:
            raise ValueError(f"cannot draw {n} distinct questions; lower the sizes")
        return list(out)[:n]

    def build(self, seed: int, sizes: dict[str, int]) -> dict[str, TokenSplit]:
        total = sum(sizes[name] for name in SPLITS)
        if total > self.num_questions:
            raise ValueError(
                f"asked for {total} questions but there are only {self.num_questions} "
                f"distinct ones with up to {self.digits} digits per operand"
            )
        seen: set[int] = set()
        splits = {}
        for i, name in enumerate(SPLITS):
            codes = self._draw(np.random.default_rng([seed, i]), sizes[name], seen)
            seen.update(codes)
            pairs = [divmod(c, 10**self.digits) for c in codes]
            splits[name] = TokenSplit(
                [self.question(a, b) for a, b in pairs], [list(str(a + b)) for a, b in pairs]
            )
        return splits

    def question(self, a: int, b: int) -> list[str]:
        """The source symbols for ``a+b``."""
        text = f"{a}+{b}"
        return list(text[::-1] if self.reverse_input else text)

    def vocabularies(self, splits):
        return Vocab(list("0123456789+")), Vocab(list("0123456789"))

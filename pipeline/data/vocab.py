"""Token vocabularies with the special tokens every token task shares."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


class Vocab:
    """Maps symbols to ids; ids 0-3 are PAD, BOS, EOS and UNK."""

    def __init__(self, symbols: Iterable[str]):
        self.itos = list(SPECIALS) + [s for s in dict.fromkeys(symbols) if s not in SPECIALS]
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, symbols: Sequence[str], eos: bool = False) -> list[int]:
        """Ids of ``symbols`` (unknown ones as UNK), with EOS appended if asked."""
        ids = [self.stoi.get(s, UNK) for s in symbols]
        return ids + [EOS] if eos else ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Symbols up to the first EOS, padding and BOS dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.itos[i])
        return out

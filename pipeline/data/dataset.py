"""Examples in memory and in batches: packed id sequences, a split as a torch Dataset,
padding into a :class:`Batch`, and batches of similar length."""

from __future__ import annotations

import itertools
from functools import cached_property
from typing import NamedTuple

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import BatchSampler, Dataset

from pipeline.data.vocab import PAD


class Batch(NamedTuple):
    """src: (B, S) ids or (B, S, D) floats; tgt: (B, T) ids (EOS-terminated) or (B, T, D).

    refs: (B, R, T') every acceptable target (rows repeat the first where a sequence has
    fewer), for tasks with several right answers; baseline: (B, T, D) a reference forecast
    (co2's seasonal naive); texts: every acceptable target as raw text, per example (the
    user's files, scored with text metrics). Each None where the task has none.
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt: torch.Tensor
    index: torch.Tensor
    refs: torch.Tensor | None = None
    baseline: torch.Tensor | None = None
    texts: list[list[str]] | None = None


class Packed:
    """Variable-length id sequences in one flat tensor with offsets (fast to save and load)."""

    def __init__(self, sequences: list[list[int]]):
        self.offsets = torch.tensor([0, *itertools.accumulate(len(x) for x in sequences)])
        self.values = torch.tensor([i for x in sequences for i in x], dtype=torch.long)

    @classmethod
    def from_arrays(cls, values: torch.Tensor, lengths: torch.Tensor) -> Packed:
        """The sequences that lie one after another in ``values``, ``lengths`` long."""
        packed = cls.__new__(cls)
        packed.values = values.long()
        packed.offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.long().cumsum(0)])
        return packed

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.values[self._bounds[i] : self._bounds[i + 1]]

    @cached_property
    def _bounds(self) -> list[int]:
        """The offsets as Python ints: slicing with them is several times faster than with
        tensor elements, and the loader slices twice per example."""
        return self.offsets.tolist()

    def lengths(self) -> torch.Tensor:
        return self.offsets.diff()


class SequenceDataset(Dataset):
    """One split: sources and targets (Packed ids or stacked floats), optional references
    (Packed, ``ref_offsets`` grouping them per example), baselines and reference texts."""

    def __init__(self, src, tgt, refs: Packed | None = None, ref_offsets=None, baseline=None,
                 texts: list[list[str]] | None = None):
        self.src, self.tgt, self.refs, self.ref_offsets = src, tgt, refs, ref_offsets
        self.baseline, self.texts = baseline, texts

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int) -> dict:
        item = {"src": self.src[i], "tgt": self.tgt[i], "index": i}
        if self.refs is not None:
            lo, hi = self.ref_offsets[i], self.ref_offsets[i + 1]
            item["refs"] = [self.refs[j] for j in range(lo, hi)]
        if self.baseline is not None:
            item["baseline"] = self.baseline[i]
        if self.texts is not None:
            item["texts"] = self.texts[i]
        return item

    def source_lengths(self) -> torch.Tensor:
        return self.src.lengths() if isinstance(self.src, Packed) else torch.full(
            (len(self.src),), self.src.shape[1]
        )

    def sort_keys(self) -> list[int]:
        """Each example's length key for bucketing: target length first, then source length."""
        src = self.source_lengths()
        tgt = self.tgt.lengths() if isinstance(self.tgt, Packed) else torch.zeros_like(src)
        return (tgt * (int(src.max()) + 1) + src).tolist()


class BucketBatchSampler(BatchSampler):
    """Batches of examples of similar length, so short sequences do not pay for long ones.

    The sampler's order is cut into pools of ``pool`` batches; each pool is sorted by
    ``keys`` and cut into batches; with ``shuffle`` the batches are then put in random
    order. Lightning re-creates it around a ``DistributedSampler`` under DDP (it passes the
    new ``sampler``), so every rank buckets its own shard and all ranks get equally many
    batches.
    """

    def __init__(self, sampler, batch_size: int, drop_last: bool, keys: list[int],
                 shuffle: bool = True, pool: int = 50):
        super().__init__(sampler, batch_size, drop_last)
        self.keys, self.shuffle, self.pool = keys, shuffle, pool

    def __iter__(self):
        indices, n, batches = list(self.sampler), self.batch_size, []
        for start in range(0, len(indices), n * self.pool):
            chunk = sorted(indices[start : start + n * self.pool], key=self.keys.__getitem__)
            batches += [chunk[i : i + n] for i in range(0, len(chunk), n)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        order = torch.randperm(len(batches)).tolist() if self.shuffle else range(len(batches))
        for i in order:
            yield batches[i]


def padding_share(loader) -> float:
    """The share of padded positions in a loader's source and target tensors (tokens only)."""
    real = total = 0
    for batch in loader:
        for x in (batch.src, batch.tgt):
            real += int((x != PAD).sum())
            total += x.numel()
    return 1.0 - real / total


def collate(items: list[dict]) -> Batch:
    """Pad a list of dataset items to a :class:`Batch` (PAD = 0 for tokens)."""
    src = [x["src"] for x in items]
    refs = baseline = None
    if "refs" in items[0]:
        most = max(len(x["refs"]) for x in items)
        rows = [r for x in items for r in x["refs"] + [x["refs"][0]] * (most - len(x["refs"]))]
        refs = pad_sequence(rows, batch_first=True, padding_value=PAD).view(len(items), most, -1)
    if "baseline" in items[0]:
        baseline = torch.stack([x["baseline"] for x in items])
    return Batch(
        pad_sequence(src, batch_first=True, padding_value=PAD),
        torch.tensor([len(x) for x in src]),
        pad_sequence([x["tgt"] for x in items], batch_first=True, padding_value=PAD),
        torch.tensor([x["index"] for x in items]),
        refs,
        baseline,
        [x["texts"] for x in items] if "texts" in items[0] else None,
    )

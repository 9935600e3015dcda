"""The LightningDataModule that serves every task: cached splits, padding, masks, buckets."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import lightning as L
import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from pipeline.data.tasks import Task, make_task
from pipeline.data.tasks.base import SPLITS
from pipeline.data.vocab import PAD, Vocab

CACHE_VERSION = 2


class Batch(NamedTuple):
    """src: (B, S) ids or (B, S, D) floats; tgt: (B, T) ids (EOS-terminated) or (B, T, D).

    refs: (B, R, T') every acceptable target (rows repeat the first where a sequence has
    fewer), for tasks with several right answers; baseline: (B, T, D) a reference forecast
    (co2's seasonal naive). Both None where the task has none.
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt: torch.Tensor
    index: torch.Tensor
    refs: torch.Tensor | None = None
    baseline: torch.Tensor | None = None


@dataclass(frozen=True)
class DataSpec:
    """What a model and its metrics need to know about the data."""

    kind: str
    input_dim: int
    output_dim: int
    max_source_len: int
    max_target_len: int
    has_references: bool = False
    mase_scale: float | None = None


class Packed:
    """Variable-length id sequences in one flat tensor with offsets (fast to save and load)."""

    def __init__(self, sequences: list[list[int]]):
        self.offsets = torch.tensor([0, *itertools.accumulate(len(x) for x in sequences)])
        self.values = torch.tensor([i for x in sequences for i in x], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def lengths(self) -> torch.Tensor:
        return self.offsets.diff()


class SequenceDataset(Dataset):
    """One split: sources and targets (Packed ids or stacked floats), optional references
    (Packed, ``ref_offsets`` grouping them per example) and baselines."""

    def __init__(self, src, tgt, refs: Packed | None = None, ref_offsets=None, baseline=None):
        self.src, self.tgt, self.refs, self.ref_offsets = src, tgt, refs, ref_offsets
        self.baseline = baseline

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int) -> dict:
        item = {"src": self.src[i], "tgt": self.tgt[i], "index": i}
        if self.refs is not None:
            lo, hi = self.ref_offsets[i], self.ref_offsets[i + 1]
            item["refs"] = [self.refs[j] for j in range(lo, hi)]
        if self.baseline is not None:
            item["baseline"] = self.baseline[i]
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
    )


class Seq2SeqDataModule(L.LightningDataModule):
    """Builds a task's splits once, caches them under ``cache_dir`` and serves batches.

    The cache key covers the task, its options, the sizes and the seed, so a sweep builds
    each data set once; writes are atomic (temp file, then rename). ``bucket_by_length``
    batches token examples of similar length together (:class:`BucketBatchSampler`).
    """

    def __init__(
        self,
        task: str,
        batch_size: int = 64,
        train_size: int = 10000,
        val_size: int = 1000,
        test_size: int = 1000,
        seed: int = 0,
        num_workers: int = 0,
        cache_dir: str | None = None,
        bucket_by_length: bool = False,
        **options,
    ):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.options = options
        self.task: Task = make_task(task, **options)
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.data: dict | None = None

    # -- building and caching -------------------------------------------------------------

    @property
    def cache_key(self) -> str:
        """A digest of every setting that changes the data."""
        settings = {
            "version": CACHE_VERSION, "task": self.hparams.task, "options": self.options,
            "sizes": self.sizes, "seed": self.hparams.seed,
        }
        blob = json.dumps(settings, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def cache_path(self) -> Path | None:
        d = self.hparams.cache_dir
        return None if d is None else Path(d) / f"{self.hparams.task}-{self.cache_key}.pt"

    def prepare_data(self) -> None:
        """Build and cache the splits unless the cache already holds them."""
        path = self.cache_path
        if self.data is not None or (path is not None and path.exists()):
            return
        data = self._build()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            torch.save(data, tmp)
            os.replace(tmp, path)
        self.data = data

    def _build(self) -> dict:
        splits = self.task.build(self.hparams.seed, self.sizes)
        if self.task.kind == "vectors":
            return {"vocabs": None, "splits": {
                name: {"src": torch.as_tensor(np.ascontiguousarray(split.sources)),
                       "tgt": torch.as_tensor(np.ascontiguousarray(split.targets)),
                       "extra": split.extra}
                for name, split in splits.items()
            }}
        src_vocab, tgt_vocab = self.task.vocabularies(splits)
        data = {"vocabs": (src_vocab.itos, tgt_vocab.itos), "splits": {}}
        for name, split in splits.items():
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
            data["splits"][name] = entry
        return data

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            path = self.cache_path
            self.data = (
                torch.load(path, weights_only=False) if path is not None and path.exists()
                else self._build()
            )

    # -- what the rest of the pipeline reads ----------------------------------------------

    @property
    def kind(self) -> str:
        return self.task.kind

    @property
    def vocabs(self) -> tuple[Vocab, Vocab] | None:
        """Source and target vocabularies of a token task."""
        if self.data["vocabs"] is None:
            return None
        return tuple(Vocab.from_itos(itos) for itos in self.data["vocabs"])

    @property
    def spec(self) -> DataSpec:
        """Sizes for the model, and what the metrics need (longest sequences, references,
        MASE scale). The longest target is taken over train only: nothing is read off test."""
        train = self.data["splits"]["train"]
        longest_src = max(int(self.dataset(s).source_lengths().max()) for s in SPLITS)
        if self.kind == "tokens":
            src, tgt = self.data["vocabs"]
            return DataSpec("tokens", len(src), len(tgt), longest_src,
                            int(train["tgt"].lengths().max()), "refs" in train)
        extra = train.get("extra") or {}
        return DataSpec("vectors", train["src"].shape[-1], train["tgt"].shape[-1], longest_src,
                        train["tgt"].shape[1], mase_scale=extra.get("train_naive_mae"))

    def dataset(self, split: str) -> SequenceDataset:
        entry = self.data["splits"][split]
        extra = entry.get("extra") or {}
        baseline = extra.get("seasonal_naive")
        return SequenceDataset(
            entry["src"], entry["tgt"], entry.get("refs"), entry.get("ref_offsets"),
            None if baseline is None else torch.as_tensor(baseline),
        )

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """A whole split as padded (sources, targets) arrays (for dataset tracking)."""
        data = self.dataset(split)
        batch = collate([data[i] for i in range(len(data))])
        return batch.src.numpy(), batch.tgt.numpy()

    @property
    def per_device_batch_size(self) -> int:
        """``batch_size`` split among the DDP ranks, so the global batch is the configured
        one (each rank reads its own share of the data through Lightning's sampler)."""
        world = self.trainer.world_size if self.trainer is not None else 1
        return max(1, self.hparams.batch_size // world)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        workers, data = self.hparams.num_workers, self.dataset(split)
        common = dict(collate_fn=collate, num_workers=workers, persistent_workers=workers > 0)
        if self.hparams.bucket_by_length and self.kind == "tokens":
            sampler = RandomSampler(data) if shuffle else SequentialSampler(data)
            batches = BucketBatchSampler(sampler, self.per_device_batch_size, False,
                                         data.sort_keys(), shuffle)
            return DataLoader(data, batch_sampler=batches, **common)
        return DataLoader(data, batch_size=self.per_device_batch_size, shuffle=shuffle, **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


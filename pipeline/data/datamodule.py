"""The LightningDataModule that serves every task: cached splits, padding, masks, buckets."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import lightning as L
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset

from pipeline.data.tasks import Task, make_task
from pipeline.data.vocab import PAD, Vocab

CACHE_VERSION = 1


class Batch(NamedTuple):
    """src: (B, S) ids or (B, S, D) floats; tgt: (B, T) ids (EOS-terminated) or (B, T, D)."""

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt: torch.Tensor
    index: torch.Tensor


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about its data."""

    kind: str
    input_dim: int
    output_dim: int
    max_target_len: int


class SequenceDataset(Dataset):
    """Pairs of (source, target) tensors; ``index`` points back to the split's examples."""

    def __init__(self, sources: list[torch.Tensor], targets: list[torch.Tensor]):
        self.sources, self.targets = sources, targets

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int):
        return self.sources[i], self.targets[i], i


def collate(items) -> Batch:
    """Pad a list of (src, tgt, index) to a :class:`Batch` (PAD = 0 for tokens)."""
    sources, targets, index = zip(*items, strict=True)
    lengths = torch.tensor([len(s) for s in sources])
    return Batch(
        pad_sequence(sources, batch_first=True, padding_value=PAD),
        lengths,
        pad_sequence(targets, batch_first=True, padding_value=PAD),
        torch.tensor(index),
    )


class Seq2SeqDataModule(L.LightningDataModule):
    """Builds a task's splits once, caches them under ``cache_dir`` and serves batches.

    The cache key covers the task, its options, the sizes and the seed, so a sweep builds
    each data set once; writes are atomic (temp file, then rename).
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
        if path is not None and path.exists():
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
        if self.task.kind == "tokens":
            src_vocab, tgt_vocab = self.task.vocabularies(splits)
            tensors = {
                name: (
                    [torch.tensor(src_vocab.encode(s)) for s in split.sources],
                    [torch.tensor(tgt_vocab.encode(t, eos=True)) for t in split.targets],
                )
                for name, split in splits.items()
            }
            return {"splits": splits, "tensors": tensors,
                    "vocabs": (src_vocab.itos, tgt_vocab.itos)}
        tensors = {
            name: (list(torch.as_tensor(split.sources, dtype=torch.float32)),
                   list(torch.as_tensor(split.targets, dtype=torch.float32)))
            for name, split in splits.items()
        }
        return {"splits": splits, "tensors": tensors, "vocabs": None}

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
    def splits(self) -> dict:
        """The raw splits (symbol sequences or arrays), for metrics and sample tables."""
        return self.data["splits"]

    @property
    def vocabs(self) -> tuple[Vocab, Vocab] | None:
        """Source and target vocabularies of a token task."""
        if self.data["vocabs"] is None:
            return None
        return tuple(Vocab(itos[4:]) for itos in self.data["vocabs"])

    @property
    def spec(self) -> DataSpec:
        """Input/output sizes and the longest target, for building the model."""
        tensors = self.data["tensors"]
        longest = max(len(t) for _, targets in tensors.values() for t in targets)
        if self.kind == "tokens":
            src, tgt = self.data["vocabs"]
            return DataSpec("tokens", len(src), len(tgt), longest)
        src0, tgt0 = tensors["train"][0][0], tensors["train"][1][0]
        return DataSpec("vectors", src0.shape[-1], tgt0.shape[-1], longest)

    def dataset(self, split: str) -> SequenceDataset:
        return SequenceDataset(*self.data["tensors"][split])

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            self.dataset(split), batch_size=self.hparams.batch_size, shuffle=shuffle,
            collate_fn=collate, num_workers=workers, persistent_workers=workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


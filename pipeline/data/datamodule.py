"""The LightningDataModule that serves every task: cached splits, loaders, buckets."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

from pipeline.data.dataset import Batch, BucketBatchSampler, SequenceDataset, collate
from pipeline.data.tasks import Task, make_task
from pipeline.data.tasks.base import SPLITS
from pipeline.data.tokenize import tokenizers_from_json
from pipeline.data.vocab import Vocab
from pipeline.files import load_or_rebuild, read_sealed, write_sealed

CACHE_VERSION = 3
__all__ = ["Batch", "DataSpec", "Seq2SeqDataModule"]


def _load_cache(path: Path) -> dict:
    """A cache file's splits, once its length and digest are checked."""
    data = torch.load(io.BytesIO(read_sealed(path)), weights_only=False)
    if not isinstance(data, dict) or "splits" not in data:
        raise ValueError("not a data cache")
    return data


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
    # Text tasks: the target vocabulary's symbols and tokenizer, to score predictions as text.
    text: dict | None = None
    # Token tasks: the training targets' mean length (EOS included), the training loss's scale.
    mean_target_len: float | None = None


class Seq2SeqDataModule(L.LightningDataModule):
    """Builds a task's splits once, caches them under ``cache_dir`` and serves batches.

    The cache key covers the task, its options, the sizes and the seed, so a sweep builds
    each data set once; the cache is written atomically with its digest and checked when read
    back (a damaged one is rebuilt). ``bucket_by_length``
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
        bucket_by_length: bool = True,
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
        fingerprint = self.task.fingerprint()
        if fingerprint is not None:  # files: their content, not only their names
            settings["content"] = fingerprint
        blob = json.dumps(settings, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def cache_path(self) -> Path | None:
        d = self.hparams.cache_dir
        return None if d is None else Path(d) / f"{self.hparams.task}-{self.cache_key}.pt"

    def prepare_data(self) -> None:
        """Build and cache the splits unless the cache already holds them whole: a cache that
        does not load, or whose recorded digest does not match, is set aside and rebuilt."""
        if self.data is None:
            self.data = self._load_or_build()

    def _load_or_build(self) -> dict:
        path = self.cache_path
        if path is None:
            return self._build()
        return load_or_rebuild(path, _load_cache, lambda: self._build_and_save(path),
                               "the data cache")

    def _build_and_save(self, path: Path) -> dict:
        data = self._build()
        buffer = io.BytesIO()
        torch.save(data, buffer)
        write_sealed(path, buffer.getbuffer())
        return data

    def _build(self) -> dict:
        splits = self.task.build(self.hparams.seed, self.sizes)
        if self.task.kind == "vectors":
            return {"vocabs": None, "splits": {
                name: {"src": torch.as_tensor(np.ascontiguousarray(split.sources)),
                       "tgt": torch.as_tensor(np.ascontiguousarray(split.targets)),
                       "extra": split.extra}
                for name, split in splits.items()
            }}
        vocabs = self.task.vocabularies(splits)
        return {
            "vocabs": tuple(v.itos for v in vocabs),
            "tokenizers": self.task.tokenizers_json(),
            "splits": {name: self.task.encode(name, split, vocabs)
                       for name, split in splits.items()},
        }

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            self.data = self._load_or_build()

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
    def tokenizers(self) -> dict | None:
        """What ``tokenizers.json`` holds for a task read from text files, else None."""
        return self.data.get("tokenizers")

    @property
    def spec(self) -> DataSpec:
        """Sizes for the model, and what the metrics need (longest sequences, references,
        MASE scale). The longest target is taken over train only: nothing is read off test."""
        train = self.data["splits"]["train"]
        longest_src = max(int(self.dataset(s).source_lengths().max()) for s in SPLITS)
        if self.kind == "tokens":
            src, tgt = self.data["vocabs"]
            lengths = train["tgt"].lengths()
            return DataSpec("tokens", len(src), len(tgt), longest_src,
                            int(lengths.max()), "refs" in train,
                            mean_target_len=float(lengths.float().mean()),
                            text=None if self.tokenizers is None else {
                                "symbols": list(tgt), "tokenizer": self.tokenizers["target"]})
        extra = train.get("extra") or {}
        return DataSpec("vectors", train["src"].shape[-1], train["tgt"].shape[-1], longest_src,
                        train["tgt"].shape[1], mase_scale=extra.get("train_naive_mae"))

    def dataset(self, split: str) -> SequenceDataset:
        entry = self.data["splits"][split]
        extra = entry.get("extra") or {}
        baseline = extra.get("seasonal_naive")
        return SequenceDataset(
            entry["src"], entry["tgt"], entry.get("refs"), entry.get("ref_offsets"),
            None if baseline is None else torch.as_tensor(baseline), entry.get("texts"),
        )

    def source_texts(self, split: str, n: int) -> list[str]:
        """The first ``n`` sources of ``split`` as text, as a model's users write them (its
        tokenizer joins the symbols); none for a vector task."""
        vocabs, data = self.vocabs, self.dataset(split)
        if vocabs is None:
            return []
        join = tokenizers_from_json(self.tokenizers)[0].join
        return [join(vocabs[0].decode(data[i]["src"])) for i in range(min(n, len(data)))]

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


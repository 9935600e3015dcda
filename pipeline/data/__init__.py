"""Tasks and the LightningDataModule that serves them; knows nothing of models."""

from pipeline.data.datamodule import Batch, DataSpec, Seq2SeqDataModule
from pipeline.data.vocab import BOS, EOS, PAD, UNK, Vocab

__all__ = ["BOS", "EOS", "PAD", "UNK", "Batch", "DataSpec", "Seq2SeqDataModule", "Vocab"]

"""Tasks and the LightningDataModule that serves them; knows nothing of models.

The data module (and with it Lightning) is imported on first use, so that what only needs
the tasks or the vocabularies (validating a config) starts in seconds.
"""

from pipeline.data.vocab import BOS, EOS, PAD, UNK, Vocab

__all__ = ["BOS", "EOS", "PAD", "UNK", "Batch", "DataSpec", "Seq2SeqDataModule", "Vocab"]
_LAZY = ("Batch", "DataSpec", "Seq2SeqDataModule")


def __getattr__(name: str):
    if name in _LAZY:
        from pipeline.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

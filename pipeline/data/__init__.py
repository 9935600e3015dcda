"""Tasks and the LightningDataModule that serves them; knows nothing of models.

The data module (and with it Lightning) is imported on first use, so that what only needs
the tasks or the vocabularies (validating a config) starts in seconds.
"""

from pipeline.data.vocab import BOS, EOS, PAD, UNK, Vocab

__all__ = ["BOS", "EOS", "PAD", "UNK", "Batch", "DataSpec", "Seq2SeqDataModule", "Vocab"]
_LAZY = ("Batch", "DataSpec", "Seq2SeqDataModule")


def __getattr__(name: str):
    if name in _LAZY:
        # Lightning, imported only where the data module is used.
        from pipeline.data import datamodule  # noqa: PLC0415

        return getattr(datamodule, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Plain PyTorch seq2seq models: no Lightning, Hydra or MLflow in here."""

from pipeline.models.keras_presets import AttentionSeq2Seq, Seq2Seq, SimpleSeq2Seq, build_model
from pipeline.models.search import Generation
from pipeline.models.seq2seq import EncoderDecoder, Seq2SeqOutput

__all__ = [
    "AttentionSeq2Seq",
    "EncoderDecoder",
    "Generation",
    "Seq2Seq",
    "Seq2SeqOutput",
    "SimpleSeq2Seq",
    "build_model",
]

"""The LightningModule that trains, validates and tests any encoder-decoder variant."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torchmetrics import MeanAbsoluteError, MeanSquaredError
from torchmetrics.aggregation import CatMetric

from pipeline.accel import DecoderGraphs
from pipeline.data import Batch, DataSpec, Vocab
from pipeline.data.tokenize import TextCodec, from_json
from pipeline.errors import NonFiniteLossError
from pipeline.metrics import (
    BucketedSequenceAccuracy,
    CharacterErrorRate,
    CorpusText,
    ErrorRate,
    MeanAbsoluteScaledError,
    SequenceAccuracy,
    TokenAccuracy,
    WordErrorRate,
    sentence_chrf,
    sequence_correct,
)
from pipeline.models import EncoderDecoder

STAGES = ("val", "test")
# Metrics scored on whole texts (the user's files), not on ids.
TEXT_METRICS = ("bleu", "chrf")
# Token models may decode this many steps past the longest training target.
DECODE_MARGIN = 5
BUCKETS = 5  # input-length buckets of test/seq_acc/len_* unless eval.bucket_width says
log = logging.getLogger(__name__)


class Seq2SeqModule(L.LightningModule):
    """Wraps an :class:`EncoderDecoder` built from ``net`` (a config with ``_target_``).

    Training feeds the ground truth with the model's ``teacher_forcing`` ratio; its loss
    (``train/loss``) sums the batch's token losses over its sequences times the training
    targets' mean length (``mean_target_len``): the mean per token on average, with every
    token weighing the same in short and long batches (length buckets). Validation
    and test report the teacher-forced loss (a likelihood, no prediction uses the ground
    truth) and score free-running decodes: greedy, or beam search with ``beam_size`` > 1 at
    test (``val_beam_size`` at validation: greedy by default, every epoch stays cheap).
    Token tasks log ``{stage}/token_acc`` and ``{stage}/seq_acc`` (any reference counts
    where a task has several), plus ``per``/``wer`` with references, and the test sequence
    accuracy per source-length bucket (``test/seq_acc/len_01-05``, ...). Tasks read from
    text files (``text``: the target symbols and tokenizer) score the predicted texts too:
    ``cer`` (character error rate), and sacrebleu's corpus ``bleu`` and ``chrf``, against
    every reference text. Vector tasks log
    ``{stage}/mse`` and ``{stage}/mae``, plus ``mase`` and the seasonal-naive baseline's
    ``mase_naive`` where the task has one.

    With ``cuda_graphs`` on a single GPU, the attention decoder's training steps replay CUDA
    graphs (``pipeline/accel.py``); elsewhere, and for validation and test, eager.
    """

    def __init__(
        self,
        net: dict[str, Any],
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        monitor: str = "val/loss",
        beam_size: int = 1,
        val_beam_size: int = 1,
        length_penalty: float = 0.0,
        max_decode_len: int | None = None,
        references: bool = False,
        max_source_len: int | None = None,
        bucket_width: int = 5,
        mase_scale: float | None = None,
        cuda_graphs: bool = False,
        label_smoothing: float = 0.0,
        graph_pad_to: int = 8,
        text: dict | None = None,
        mean_target_len: float | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.net: EncoderDecoder = instantiate(net, _convert_="all")
        self.tokens = self.net.kind == "tokens"
        self.codec = None if text is None else TextCodec(
            from_json(text["tokenizer"]), Vocab.from_itos(text["symbols"]))
        self.texts = {stage: CorpusText(None if text is None else text["tokenizer"]["kind"])
                      for stage in STAGES}
        self.metrics = torch.nn.ModuleDict({stage: self._metrics() for stage in STAGES})
        self.buckets = (
            BucketedSequenceAccuracy(max_source_len, bucket_width, self.net.pad_id)
            if self.tokens and max_source_len else None
        )
        # Every test example's index and score, gathered from all ranks (report.py logs them).
        self.examples = torch.nn.ModuleDict({k: CatMetric() for k in ("index", "score")})
        self.test_examples: dict[str, torch.Tensor] = {}
        self.graphs: DecoderGraphs | None = None
        self._epoch_start: float | None = None

    @classmethod
    def from_config(cls, cfg: DictConfig, spec: DataSpec, optimizer=None,
                    scheduler=None) -> Seq2SeqModule:
        """The module ``cfg`` describes, sized by the data (kind, vocabularies, lengths), with
        the optimizer and scheduler partials (default: Adam)."""
        net = OmegaConf.to_container(cfg.model, resolve=True, enum_to_str=True)
        net.update(kind=spec.kind, input_dim=spec.input_dim, output_dim=spec.output_dim)
        if spec.kind == "vectors":
            net["output_length"] = spec.max_target_len
        return cls(
            net=net,
            optimizer=optimizer,
            scheduler=scheduler,
            monitor=cfg.monitor,
            beam_size=cfg.eval.beam_size,
            val_beam_size=cfg.eval.val_beam_size,
            length_penalty=cfg.eval.length_penalty,
            max_decode_len=spec.max_target_len + DECODE_MARGIN,
            references=spec.has_references,
            max_source_len=spec.max_source_len,
            bucket_width=cfg.eval.get("bucket_width") or -(-spec.max_source_len // BUCKETS),
            mase_scale=spec.mase_scale,
            cuda_graphs=cfg.accel.cuda_graphs,
            label_smoothing=cfg.get("label_smoothing", 0.0),
            graph_pad_to=cfg.accel.get("pad_to", 8),
            text=spec.text,
            mean_target_len=spec.mean_target_len,
        )

    @property
    def monitorable(self) -> set[str]:
        """The validation metrics this module logs (what a checkpoint may monitor)."""
        text = TEXT_METRICS if self.codec is not None else ()
        return {"val/loss", *(f"val/{name}" for name in [*self.metrics["val"], *text])}

    def on_fit_start(self) -> None:
        if not self.hparams.cuda_graphs or self.device.type != "cuda":
            return
        if self.trainer.world_size > 1:
            log.info("accel.cuda_graphs is off under DDP: each rank would capture graphs "
                     "around gradient hooks that DDP fires itself; training runs eager")
            return
        self.graphs = DecoderGraphs(self.net, pad_to=self.hparams.graph_pad_to)

    def _metrics(self) -> torch.nn.ModuleDict:
        pad = self.net.pad_id
        if self.tokens:
            metrics = {"token_acc": TokenAccuracy(pad), "seq_acc": SequenceAccuracy(pad)}
            if self.hparams.references and self.hparams.text is None:
                metrics.update(per=ErrorRate(pad, self.net.eos_id), wer=WordErrorRate(pad))
            if self.hparams.text is not None:
                metrics.update(cer=CharacterErrorRate())
        else:
            metrics = {"mse": MeanSquaredError(), "mae": MeanAbsoluteError()}
            if self.hparams.mase_scale:
                metrics.update(mase=MeanAbsoluteScaledError(self.hparams.mase_scale),
                               mase_naive=MeanAbsoluteScaledError(self.hparams.mase_scale))
        return torch.nn.ModuleDict(metrics)

    def forward(self, src, src_lengths=None, **kwargs):
        return self.net.generate(src, src_lengths, **kwargs)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0,
             per_token: float | None = None) -> torch.Tensor:
        """Cross-entropy over the real target tokens (mse for vectors): their mean, or with
        ``per_token`` their sum over (sequences x ``per_token``), so that every token weighs
        the same whichever batch it is in (batches of long sequences weigh more)."""
        if not self.tokens:
            return F.mse_loss(outputs, target)
        loss = F.cross_entropy(outputs.flatten(0, 1), target.flatten(),
                               ignore_index=self.net.pad_id, label_smoothing=label_smoothing,
                               reduction="mean" if per_token is None else "sum")
        return loss if per_token is None else loss / (target.shape[0] * per_token)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        if self.graphs is not None and self.graphs.applies(batch.src):
            outputs = self.graphs(batch.src, batch.src_lengths, batch.tgt)
        else:
            outputs = self.net(batch.src, batch.src_lengths, target=batch.tgt).outputs
        loss = self.loss(outputs, batch.tgt, self.hparams.label_smoothing,
                         self.hparams.mean_target_len)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(loss.item(), self.current_epoch, self.global_step)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=batch.src.shape[0])
        return loss

    def _evaluate(self, batch: Batch, stage: str) -> None:
        target, size = batch.tgt, batch.tgt.shape[0]
        scored = self.net(batch.src, batch.src_lengths, target=target, teacher_forcing=1.0)
        self.log(f"{stage}/loss", self.loss(scored.outputs, target), sync_dist=True,
                 batch_size=size)
        pred = self.decode(batch, stage)
        texts = None
        if self.codec is not None:
            texts = [self.codec.decode(row) for row in pred.tolist()]
            self.texts[stage].update(texts, batch.texts)
        for name, metric in self.metrics[stage].items():
            if name == "cer":
                metric.update(texts, batch.texts)
            elif not self.tokens:
                metric.update(batch.baseline if name == "mase_naive" else pred, target)
            else:
                metric.update(pred, target, batch.refs)
            self.log(f"{stage}/{name}", metric, batch_size=size)
        if stage == "test" and self.buckets is not None:
            self.buckets.update(pred, target, batch.refs, batch.src_lengths)
        if stage == "test":
            self.examples["index"].update(batch.index)
            self.examples["score"].update(self.example_scores(pred, batch, texts))

    @property
    def example_score(self) -> str:
        """What each test example's score is: ``chrf`` (sentence chrF) where a text metric
        is monitored, else ``exact`` (1/0 sequence right) or ``squared_error`` (vectors)."""
        if not self.tokens:
            return "squared_error"
        monitored = self.hparams.monitor.rsplit("/", 1)[-1]
        return "chrf" if self.codec is not None and monitored in TEXT_METRICS else "exact"

    def example_scores(self, pred: torch.Tensor, batch: Batch,
                       texts: list[str] | None = None) -> torch.Tensor:
        """Each test example's score (:attr:`example_score`); a sweep compares candidates
        example by example with them."""
        if self.example_score == "chrf":
            return torch.tensor([sentence_chrf(h, refs) for h, refs in
                                 zip(texts, batch.texts, strict=True)], device=pred.device)
        if self.tokens:
            refs = batch.tgt if batch.refs is None else batch.refs
            return sequence_correct(pred, refs, self.net.pad_id).float()
        return (pred - batch.tgt).square().flatten(1).mean(1)

    def log_texts(self, stage: str) -> None:
        """sacrebleu's corpus scores of the stage's texts, gathered from every rank."""
        pairs = self.texts[stage].pairs
        if self.trainer.world_size > 1:
            everyone = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(everyone, pairs)
            self.texts[stage].pairs = [p for rank in everyone for p in rank]
        scores = self.texts[stage].compute()
        self.texts[stage].reset()
        for name, value in scores.items():
            self.log(f"{stage}/{name}", value)

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()

    def on_validation_epoch_end(self) -> None:
        """Text scores, and ``time/epoch_s``: the epoch's wall time, training and
        validation."""
        if self.codec is not None:
            self.log_texts("val")
        if self._epoch_start is not None and not self.trainer.sanity_checking:
            self.log("time/epoch_s", time.perf_counter() - self._epoch_start)
            self._epoch_start = None

    def on_test_epoch_end(self) -> None:
        if self.codec is not None:
            self.log_texts("test")
        if self.buckets is not None:
            self.log_dict({f"test/seq_acc/{k}": v for k, v in self.buckets.compute().items()})
            self.buckets.reset()
        self.test_examples = {k: m.compute().cpu() for k, m in self.examples.items()}
        for metric in self.examples.values():
            metric.reset()

    def decode(self, batch: Batch, stage: str = "test") -> torch.Tensor:
        """Free-running predictions: token ids (B, T') or vectors (B, T, D); beam search of
        ``beam_size`` at test, of ``val_beam_size`` (greedy by default) at validation."""
        if not self.tokens:
            return self.net(batch.src, batch.src_lengths, max_len=batch.tgt.shape[1]).outputs
        max_len = self.hparams.max_decode_len or batch.tgt.shape[1]
        beam = self.hparams.beam_size if stage == "test" else self.hparams.val_beam_size
        return self.net.generate(
            batch.src, batch.src_lengths, max_len=max_len, beam_size=beam,
            length_penalty=self.hparams.length_penalty,
        ).sequences

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self):
        optimizer = (self.hparams.optimizer or torch.optim.Adam)(self.parameters())
        if self.hparams.scheduler is None:
            return optimizer
        scheduler = self.hparams.scheduler(optimizer)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": self.hparams.monitor}}

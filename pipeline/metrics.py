"""Sequence metrics as torchmetrics: summed over batches and ranks, padding excluded."""

from __future__ import annotations

import torch
from rapidfuzz.distance import Levenshtein
from torchmetrics import Metric


def align(pred: torch.Tensor, width: int, pad_id: int) -> torch.Tensor:
    """Cut or right-pad predicted token rows (..., T') to ``width`` columns."""
    if pred.shape[-1] >= width:
        return pred[..., :width]
    return torch.nn.functional.pad(pred, (0, width - pred.shape[-1]), value=pad_id)


def sequence_correct(pred: torch.Tensor, refs: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """(B,) bool: the prediction (B, T') equals a reference (B, T) or any of (B, R, T),
    every real position (EOS included) right; a prediction running past EOS is wrong."""
    if refs.dim() == 2:
        refs = refs.unsqueeze(1)
    pred = align(pred, refs.shape[-1], pad_id).unsqueeze(1)
    wrong = (pred != refs) & (refs != pad_id)
    return (~wrong.any(dim=-1)).any(dim=1)


def edit_distance(a: list[int], b: list[int]) -> int:
    """Levenshtein distance between two id sequences (rapidfuzz, in C++)."""
    return Levenshtein.distance(a, b)


class Ratio(Metric):
    """numerator / denominator, both summed over batches and ranks."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("num", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("den", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def compute(self) -> torch.Tensor:
        return (self.num / self.den.clamp(min=1e-12)).float()


class TokenAccuracy(Ratio):
    """Share of real target positions (EOS included, padding excluded) predicted right."""

    def __init__(self, pad_id: int = 0):
        super().__init__()
        self.pad_id = pad_id

    def update(self, pred: torch.Tensor, target: torch.Tensor, refs=None) -> None:
        real = target != self.pad_id
        self.num += ((align(pred, target.shape[1], self.pad_id) == target) & real).sum()
        self.den += real.sum()


class SequenceAccuracy(Ratio):
    """Share of sequences entirely right (matching any reference where there are several)."""

    def __init__(self, pad_id: int = 0):
        super().__init__()
        self.pad_id = pad_id

    def update(self, pred: torch.Tensor, target: torch.Tensor, refs=None) -> None:
        self.num += sequence_correct(pred, target if refs is None else refs, self.pad_id).sum()
        self.den += target.shape[0]


class WordErrorRate(SequenceAccuracy):
    """Share of sequences with any token wrong (word error rate on g2p): 1 - seq_acc."""

    def compute(self) -> torch.Tensor:
        return 1.0 - super().compute()


class ErrorRate(Ratio):
    """Token error rate: edit distance to the closest reference / that reference's length
    (phoneme error rate on g2p). EOS and padding are not counted."""

    def __init__(self, pad_id: int = 0, eos_id: int = 2):
        super().__init__()
        self.pad_id, self.eos_id = pad_id, eos_id

    def _ids(self, row: torch.Tensor) -> list[int]:
        out = []
        for i in row.tolist():
            if i == self.eos_id:
                break
            if i != self.pad_id:
                out.append(i)
        return out

    def update(self, pred: torch.Tensor, target: torch.Tensor, refs=None) -> None:
        refs = target.unsqueeze(1) if refs is None else refs
        for p, rs in zip(pred, refs, strict=True):
            hyp = self._ids(p)
            best = min((edit_distance(hyp, r), len(r)) for r in map(self._ids, rs))
            self.num += best[0]
            self.den += best[1]


class BucketedSequenceAccuracy(Metric):
    """Sequence accuracy per source-length bucket ``[1..width], [width+1..2*width], ...``."""

    full_state_update = False

    def __init__(self, max_len: int, width: int = 5, pad_id: int = 0):
        super().__init__()
        self.width, self.pad_id = width, pad_id
        buckets = (max_len + width - 1) // width
        self.add_state("correct", torch.zeros(buckets, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(buckets, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred, target, refs=None, src_lengths=None) -> None:
        bucket = ((src_lengths.to(self.total.device) - 1) // self.width).clamp(
            max=len(self.total) - 1
        )
        ok = sequence_correct(pred, target if refs is None else refs, self.pad_id)
        self.total += torch.bincount(bucket, minlength=len(self.total))
        self.correct += torch.bincount(bucket, weights=ok.long(), minlength=len(self.total)).long()

    def compute(self) -> dict[str, torch.Tensor]:
        return {
            f"len_{i * self.width + 1:02d}-{(i + 1) * self.width:02d}": c.float() / t
            for i, (c, t) in enumerate(zip(self.correct, self.total, strict=True)) if t > 0
        }


class MeanAbsoluteScaledError(Ratio):
    """MASE: the forecast's mean absolute error over ``scale``, the in-sample MAE of the
    seasonal-naive forecast (Hyndman & Koehler 2006). Below 1 beats that baseline."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self.num += (pred - target).abs().sum() / self.scale
        self.den += target.numel()


class CharacterErrorRate(Ratio):
    """Character edit distance of each predicted text to its closest reference text, over
    that reference's length (rapidfuzz)."""

    def update(self, hypotheses: list[str], references: list[list[str]]) -> None:
        for hyp, refs in zip(hypotheses, references, strict=True):
            distance, length = min((Levenshtein.distance(hyp, r), len(r)) for r in refs)
            self.num += distance
            self.den += length


# sacrebleu's BLEU tokenization by the target side's tokenizer; others: its default, 13a.
BLEU_TOKENIZE = {"chars": "char"}


class CorpusText:
    """A stage's predicted and reference texts, scored at its end with sacrebleu's corpus
    BLEU and chrF (every example's references; examples with fewer are padded with None,
    which sacrebleu skips). Strings cannot travel in torchmetrics' states: under DDP the
    module gathers :attr:`pairs` from every rank first.

    BLEU counts n-grams of sacrebleu's tokenization chosen from the target ``tokenizer``:
    characters (``tokenize="char"``) for ``chars``, where its default word tokenization
    (``13a``) would see a target without spaces as one word and score 0; ``13a`` for
    ``words``, ``bpe`` and ``unigram`` (texts of words). chrF always counts characters."""

    def __init__(self, tokenizer: str | None = None):
        self.pairs: list[tuple[str, list[str]]] = []
        self.tokenize = BLEU_TOKENIZE.get(tokenizer, "13a")

    def update(self, hypotheses: list[str], references: list[list[str]]) -> None:
        self.pairs += zip(hypotheses, references, strict=True)

    def compute(self) -> dict[str, float]:
        from sacrebleu.metrics import BLEU, CHRF  # noqa: PLC0415 - only for text tasks

        if not self.pairs:
            return {}
        hyps = [h for h, _ in self.pairs]
        most = max(len(r) for _, r in self.pairs)
        streams = [[r[i] if i < len(r) else None for _, r in self.pairs] for i in range(most)]
        return {"bleu": BLEU(tokenize=self.tokenize).corpus_score(hyps, streams).score,
                "chrf": CHRF().corpus_score(hyps, streams).score}

    def reset(self) -> None:
        self.pairs = []


def sentence_chrf(hypothesis: str, references: list[str]) -> float:
    """sacrebleu's sentence chrF of one prediction, in [0, 1]."""
    from sacrebleu import sentence_chrf as chrf  # noqa: PLC0415 - only for text tasks

    return chrf(hypothesis, references).score / 100

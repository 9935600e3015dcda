"""Sequence metrics as torchmetrics (summed over batches and ranks, padding excluded)."""

from __future__ import annotations

import torch
from torchmetrics import Metric


def align(pred: torch.Tensor, width: int, pad_id: int) -> torch.Tensor:
    """Cut or right-pad predicted token rows (B, T') to ``width`` columns."""
    if pred.shape[1] >= width:
        return pred[:, :width]
    return torch.nn.functional.pad(pred, (0, width - pred.shape[1]), value=pad_id)


class TokenAccuracy(Metric):
    """Share of real target positions (EOS included, padding excluded) predicted right."""

    def __init__(self, pad_id: int = 0):
        super().__init__()
        self.pad_id = pad_id
        self.add_state("correct", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        real = target != self.pad_id
        self.correct += ((align(pred, target.shape[1], self.pad_id) == target) & real).sum()
        self.total += real.sum()

    def compute(self) -> torch.Tensor:
        return self.correct.float() / self.total.clamp(min=1)


class SequenceAccuracy(Metric):
    """Share of sequences whose every real target position (EOS included) is right.

    A prediction that runs past the target's EOS is wrong at the EOS position.
    """

    def __init__(self, pad_id: int = 0):
        super().__init__()
        self.pad_id = pad_id
        self.add_state("correct", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self.correct += sequence_correct(pred, target, self.pad_id).sum()
        self.total += target.shape[0]

    def compute(self) -> torch.Tensor:
        return self.correct.float() / self.total.clamp(min=1)


def sequence_correct(pred: torch.Tensor, target: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """(B,) bool: the whole sequence is right (padding positions ignored)."""
    real = target != pad_id
    wrong = (align(pred, target.shape[1], pad_id) != target) & real
    return ~wrong.any(dim=1)

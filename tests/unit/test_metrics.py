"""Metrics: padding never counts, any reference counts, buckets, edit distance, MASE."""

import torch

from pipeline.metrics import (
    BucketedSequenceAccuracy,
    ErrorRate,
    MeanAbsoluteScaledError,
    SequenceAccuracy,
    TokenAccuracy,
    WordErrorRate,
    edit_distance,
)

EOS, PAD = 2, 0
TARGET = torch.tensor([[5, 6, 7, EOS], [5, EOS, PAD, PAD]])


def test_token_and_sequence_accuracy_ignore_padding():
    pred = torch.tensor([[5, 6, 9, EOS], [5, EOS, 8, 8]])  # junk after EOS in row 2
    tok, seq = TokenAccuracy(), SequenceAccuracy()
    tok.update(pred, TARGET)
    seq.update(pred, TARGET)
    assert tok.compute() == 5 / 6
    assert seq.compute() == 0.5


def test_running_past_eos_or_stopping_early_is_wrong():
    seq = SequenceAccuracy()
    seq.update(torch.tensor([[5, 6, 7, 7, EOS], [5, 5, EOS, PAD, PAD]]), TARGET)
    assert seq.compute() == 0.0
    early = SequenceAccuracy()
    early.update(torch.tensor([[5, EOS], [5, EOS]]), TARGET)
    assert early.compute() == 0.5


def test_any_reference_counts_and_error_rates():
    refs = torch.tensor([[[5, 6, 7, EOS], [5, 8, 7, EOS]], [[5, EOS, PAD, PAD]] * 2])
    pred = torch.tensor([[5, 8, 7, EOS], [6, EOS, PAD, PAD]])
    seq, wer, per = SequenceAccuracy(), WordErrorRate(), ErrorRate(eos_id=EOS)
    for m in (seq, wer, per):
        m.update(pred, TARGET, refs)
    assert seq.compute() == 0.5 and wer.compute() == 0.5
    assert per.compute() == 1 / 4  # 0 errors against the 2nd reference of row 1, 1 of 1 in row 2


def test_edit_distance():
    assert edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert edit_distance([1, 2, 3], [1, 3]) == 1
    assert edit_distance([], [4, 5]) == 2
    assert edit_distance([1, 2, 3, 4], [2, 3, 4, 5]) == 2


def test_accuracy_per_source_length_bucket():
    m = BucketedSequenceAccuracy(max_len=12, width=5)
    pred = torch.tensor([[5, 6, 7, EOS], [6, EOS, PAD, PAD]])
    m.update(pred, TARGET, None, torch.tensor([3, 7]))
    m.update(pred, TARGET, None, torch.tensor([12, 1]))
    assert {k: float(v) for k, v in m.compute().items()} == {
        "len_01-05": 0.5, "len_06-10": 0.0, "len_11-15": 1.0,
    }


def test_mase_against_the_in_sample_scale():
    m = MeanAbsoluteScaledError(scale=2.0)
    m.update(torch.zeros(2, 3, 1), torch.ones(2, 3, 1))
    assert m.compute() == 0.5

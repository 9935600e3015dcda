"""Every variant learns: the copy task to >= 0.95 held-out sequence accuracy, and attention
on a reversal task aligns each output step with its own source position.

The task is tiny and generated here with a fixed seed: every sequence of 1..MAX_LEN symbols
(ids 3..), split once into training and held-out sequences (a quarter of the longest ones
are never trained on). Training is Adam on cross-entropy over the target tokens plus EOS,
padding ignored, with a fixed step budget and an early stop once the model copies every
training sequence; accuracy is greedy ``generate`` on the held-out sequences, a sequence
counting only when every token up to and including EOS is right.
"""

from __future__ import annotations

import itertools
import os
import time

import pytest
import torch
import torch.nn.functional as F

from pipeline.models import EncoderDecoder

PAD, BOS, EOS, FIRST = 0, 1, 2, 3
SYMBOLS = int(os.environ.get("T_SYMBOLS", 8))
MAX_LEN = int(os.environ.get("T_MAXLEN", 3))
VOCAB = FIRST + SYMBOLS
THRESHOLD = 0.95


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and the suite may share the machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def split() -> tuple[list[list[int]], list[list[int]]]:
    """All sequences of 1..MAX_LEN symbols; a fixed quarter of the longest ones held out."""
    longest = list(itertools.product(range(FIRST, VOCAB), repeat=MAX_LEN))
    order = torch.randperm(len(longest), generator=torch.Generator().manual_seed(1234))
    held = {longest[i] for i in order[: len(longest) // 4].tolist()}
    train = [
        list(s)
        for n in range(1, MAX_LEN + 1)
        for s in itertools.product(range(FIRST, VOCAB), repeat=n)
        if s not in held
    ]
    return train, sorted(list(s) for s in held)


TRAIN, HELD_OUT = split()


def tensors(seqs: list[list[int]], reverse: bool = False):
    """(src (B, S), lengths (B,), target (B, S + 1)): target = source (reversed) + EOS."""
    width = max(len(s) for s in seqs)
    src = torch.full((len(seqs), width), PAD)
    tgt = torch.full((len(seqs), width + 1), PAD)
    for i, s in enumerate(seqs):
        src[i, : len(s)] = torch.tensor(s)
        tgt[i, : len(s) + 1] = torch.tensor((s[::-1] if reverse else s) + [EOS])
    return src, torch.tensor([len(s) for s in seqs]), tgt


def sequence_accuracy(model: EncoderDecoder, src, lengths, tgt) -> float:
    """Greedy decoding; a sequence is right when every token through EOS is (PAD after)."""
    out = model.generate(src, lengths, max_len=tgt.shape[1] + 2).sequences
    width = max(out.shape[1], tgt.shape[1])
    out = F.pad(out, (0, width - out.shape[1]), value=PAD)
    tgt = F.pad(tgt, (0, width - tgt.shape[1]), value=PAD)
    return (out == tgt).all(dim=1).float().mean().item()


def train(
    reverse: bool = False,
    *,
    seed: int = 0,
    hidden: int = 48,
    batch: int = 64,
    max_steps: int = 400,
    lr: float = 1e-2,
    check_every: int = 25,
    **switches,
) -> tuple[EncoderDecoder, int]:
    """Train a token model on the copy (or reversal) task; return it and the steps taken."""
    torch.manual_seed(seed)
    model = EncoderDecoder(
        kind="tokens", input_dim=VOCAB, output_dim=VOCAB, hidden_dim=hidden, **switches
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    draw = torch.Generator().manual_seed(seed)
    seen = tensors(TRAIN, reverse)
    for step in range(1, max_steps + 1):
        index = torch.randint(len(TRAIN), (batch,), generator=draw).tolist()
        src, lengths, tgt = tensors([TRAIN[i] for i in index], reverse)
        model.train()
        logits = model(src, lengths, target=tgt).outputs
        assert logits.shape == (batch, tgt.shape[1], VOCAB)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), tgt.reshape(-1), ignore_index=PAD)
        assert torch.isfinite(loss)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        if step % check_every == 0 and sequence_accuracy(model, *seen) == 1.0:
            break
    return model.eval(), step

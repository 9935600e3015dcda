"""Every op the models call stays inside its documented contract, on every path.

CPU kernels tolerate arguments that CUDA kernels refuse: ``torch.lstm_cell`` with a (B, 4H)
bias broadcasts on the CPU and raises on CUDA ("Expected 1-dimensional tensor ... for
argument #3 'input_bias'"). A ``TorchFunctionMode`` checks the arguments of each call against
what the PyTorch documentation states, so such a call fails here, on a CPU, before it reaches
a GPU.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from pipeline.models import EncoderDecoder


def _bias(bias, size: int, name: str = "bias") -> str | None:
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != size):
        return f"{name} must be 1-D of size {size}, got {tuple(bias.shape)}"
    return None


def _rnn_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    h = hx[0] if isinstance(hx, tuple | list) else hx
    gates = w_ih.shape[0]
    if input.dim() not in (1, 2) or w_ih.dim() != 2 or w_hh.dim() != 2:
        return "input must be 1-D or 2-D and both weights 2-D"
    if w_ih.shape[1] != input.shape[-1] or w_hh.shape != (gates, h.shape[-1]):
        return f"weights {tuple(w_ih.shape)}, {tuple(w_hh.shape)} do not fit the sizes"
    return _bias(b_ih, gates, "b_ih") or _bias(b_hh, gates, "b_hh")


def _linear(input, weight, bias=None):
    if weight.dim() != 2 or input.shape[-1] != weight.shape[1]:
        return f"weight must be (out, {input.shape[-1]}), got {tuple(weight.shape)}"
    return _bias(bias, weight.shape[0])


def _matmuls(*mats: torch.Tensor, dims: int):
    if any(m.dim() != dims for m in mats) or mats[0].shape[-1] != mats[1].shape[-2]:
        return f"needs {dims}-D operands with matching inner sizes, got " + ", ".join(
            str(tuple(m.shape)) for m in mats)
    if dims == 3 and mats[0].shape[0] != mats[1].shape[0]:
        return "batch sizes differ"
    return None


def _addmm(input, mat1, mat2, *, beta=1, alpha=1, out=None):
    return _matmuls(mat1, mat2, dims=2) or (
        None if input.dim() <= 2 else "input must broadcast to (n, p): at most 2-D")


def _baddbmm(input, b1, b2, *, beta=1, alpha=1, out=None):
    return _matmuls(b1, b2, dims=3) or (
        None if input.dim() <= 3 else "input must broadcast to (b, n, p): at most 3-D")


def _embedding(input, weight, padding_idx=None, *args, **kwargs):
    if weight.dim() != 2 or input.dtype not in (torch.long, torch.int):
        return "weight must be 2-D and indices integer"
    return None


CONTRACTS = {
    torch.lstm_cell: _rnn_cell,
    torch.gru_cell: _rnn_cell,
    F.linear: _linear,
    torch.addmm: _addmm,
    torch.baddbmm: _baddbmm,
    torch.bmm: lambda a, b, **kw: _matmuls(a, b, dims=3),
    torch.mm: lambda a, b, **kw: _matmuls(a, b, dims=2),
    F.embedding: _embedding,
}


class Contracts(TorchFunctionMode):
    """Checks every call of the ops in ``CONTRACTS``; counts them and keeps what broke."""

    def __init__(self):
        super().__init__()
        self.checked: Counter = Counter()
        self.broken: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        check = CONTRACTS.get(func)
        if check is not None:
            self.checked[func.__name__] += 1
            problem = check(*args, **kwargs)
            if problem:
                self.broken.append(f"{func.__name__}: {problem}")
        return func(*args, **kwargs)


VARIANTS = [
    dict(feedback=False, bridge=False),
    dict(),
    dict(peek=True, cell="gru", depth=2, dropout=0.2),
    dict(attention="additive"),
    dict(attention="additive", peek=True, bidirectional=True, bridge=False),
    dict(attention="dot", peek=True, cell="gru", depth=[2, 3]),
    dict(attention="general", peek=True, depth=2, io_dropout=0.2),
    dict(attention="additive", peek=True, feedback=False, bridge=False),
]


def test_the_checker_rejects_a_call_that_fails_on_cuda():
    """``torch.lstm_cell`` with a (B, 4H) bias: the CPU kernel broadcasts it, CUDA refuses."""
    x, h, c = torch.randn(3, 5), torch.randn(3, 4), torch.randn(3, 4)
    w_ih, w_hh, b = torch.randn(16, 5), torch.randn(16, 4), torch.randn(16)
    with Contracts() as mode:
        torch.lstm_cell(x, (h, c), w_ih, w_hh, b, b)
        torch.lstm_cell(x, (h, c), w_ih, w_hh, torch.randn(3, 16), b)  # runs on the CPU
    assert mode.checked["lstm_cell"] == 2
    assert len(mode.broken) == 1 and "b_ih must be 1-D of size 16" in mode.broken[0]


@pytest.mark.parametrize("kw", VARIANTS, ids=str)
def test_every_path_keeps_every_op_in_its_contract(kw):
    """Training (teacher forcing 1 and 0.5), backward, greedy and beam search, on the fast
    path and on the plain one."""
    torch.manual_seed(0)
    model = EncoderDecoder(input_dim=12, output_dim=12, hidden_dim=8, **kw)
    src = torch.randint(4, 12, (3, 6))
    lengths = torch.tensor([6, 2, 4])
    tgt = torch.randint(4, 12, (3, 5))
    for fast in (True, False):
        model.fast = fast
        with Contracts() as mode:
            model.train()
            for tf in (1.0, 0.5):
                model(src, lengths, target=tgt, teacher_forcing=tf).outputs.sum().backward()
            for beam in (1, 3):
                model.generate(src, lengths, max_len=6, beam_size=beam)
        assert not mode.broken, mode.broken
        assert mode.checked["linear"] > 0 and mode.checked["embedding"] > 0

"""The input-feeding loop's hand-written backward pass against autograd's."""

from unittest import mock

import pytest
import torch

from pipeline.models import EncoderDecoder
from pipeline.models import decoder as decoder_module
from pipeline.models.attention import mask_bias
from pipeline.models.feeding_loop import FeedingLoop


def inputs(steps=4, batch=3, source=5, hidden=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    gates = 4 * hidden

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.double).requires_grad_()

    lengths = torch.tensor([source, 2, 1][:batch])
    mask = torch.arange(source)[None] < lengths[:, None]
    return (rand(steps, batch, gates), rand(batch, hidden), rand(batch, hidden),
            rand(batch, source, hidden), rand(batch, source, hidden),
            mask_bias(mask).double(), rand(gates + hidden, hidden), rand(gates + hidden),
            rand(1, hidden), rand(hidden, gates))


def test_gradients_match_autograd_numerically():
    """Every input's gradient, for a loss on both differentiable outputs, padding included."""
    def outputs(*args):
        hs, contexts, _ = FeedingLoop.apply(*args)
        return hs, contexts

    assert torch.autograd.gradcheck(outputs, inputs(), eps=1e-6, atol=1e-6)


def test_outputs_without_a_gradient_for_one_of_them():
    """A loss on the states alone (the contexts unused) still back-propagates."""
    args = inputs()
    hs, _, weights = FeedingLoop.apply(*args)
    hs.sum().backward()
    assert args[0].grad is not None and not weights.requires_grad


@pytest.mark.parametrize("train", [False, True])
def test_the_decoder_runs_its_steps_through_the_loop(train):
    """The default attention model (one LSTM layer, additive, input feeding) trains through
    the loop; a GRU decoder does not."""
    src = torch.tensor([[5, 6, 7], [8, 9, 0]])
    lengths, tgt = torch.tensor([3, 2]), torch.tensor([[5, 6, 2], [7, 2, 0]])
    for cell, expected in (("lstm", 1), ("gru", 0)):
        model = EncoderDecoder(kind="tokens", input_dim=12, output_dim=12, hidden_dim=8,
                               attention="additive", peek=True, bidirectional=True,
                               cell=cell).train(train)
        with mock.patch.object(decoder_module, "feeding_loop",
                               wraps=decoder_module.feeding_loop) as loop:
            model(src, lengths, target=tgt, teacher_forcing=1.0)
        assert loop.call_count == expected


def test_bf16_products_stay_close_to_fp32():
    """low=bf16: the outputs and every gradient come back fp32, off from the fp32 loop's by
    bf16's rounding (at most 2.2 % of each tensor's largest value here), not more, and not
    equal to them (bf16 really ran)."""
    def run(low):
        args = [x.detach().float().requires_grad_(x.requires_grad) for x in inputs(hidden=16)]
        hs, contexts, _ = FeedingLoop.apply(*args, low)
        (hs.sum() + contexts.square().sum()).backward()
        return [hs, contexts] + [a.grad for a in args if a.requires_grad]

    fp32, bf16 = run(None), run(torch.bfloat16)
    assert all(x.dtype == torch.float32 for x in bf16)
    assert not torch.equal(fp32[0], bf16[0])
    for a, b in zip(bf16, fp32, strict=True):
        torch.testing.assert_close(a, b, atol=4e-2 * float(b.abs().max()), rtol=0)

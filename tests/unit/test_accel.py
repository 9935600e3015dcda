"""The GPU step's static shapes change no number: padded to fixed lengths, the decoder gives
the same outputs and gradients (checked here on the CPU, through the eager fallback that the
graphs replace; the graphs themselves are checked in ``tests/gpu``)."""

import torch

from pipeline.accel import DecoderGraphs
from pipeline.models import EncoderDecoder


def test_padding_to_static_shapes_changes_no_output_or_gradient():
    torch.manual_seed(0)
    net = EncoderDecoder(input_dim=12, output_dim=12, hidden_dim=8, bidirectional=True,
                         bridge=False, peek=True, attention="additive").train()
    padded = DecoderGraphs(net, pad_to=8, max_graphs=0)  # never captures: eager, padded
    src = torch.randint(4, 12, (3, 5))
    lengths = torch.tensor([5, 2, 4])
    tgt = torch.randint(4, 12, (3, 6))
    tgt[1, 4:] = 0
    params = list(net.parameters())
    results = []
    for forward in (lambda: net(src, lengths, target=tgt).outputs,
                    lambda: padded(src, lengths, tgt)):
        out = forward()
        loss = torch.nn.functional.cross_entropy(out.flatten(0, 1), tgt.flatten(),
                                                 ignore_index=0)
        results.append((out, torch.autograd.grad(loss, params)))
    (a, grads_a), (b, grads_b) = results
    assert b.shape == a.shape == (3, 6, 12)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for ga, gb in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-6)


def test_graphs_apply_only_where_they_can():
    net = EncoderDecoder(input_dim=12, output_dim=12, hidden_dim=8, peek=True,
                         attention="dot").train()
    src = torch.zeros(2, 3, dtype=torch.long)
    assert not DecoderGraphs(net).applies(src)  # no CUDA here, or a CPU tensor
    if torch.cuda.is_available():
        assert DecoderGraphs(net.cuda()).applies(src.cuda())
        net.fast = False
        assert not DecoderGraphs(net).applies(src.cuda())

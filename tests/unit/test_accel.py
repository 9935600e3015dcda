"""The GPU step's static shapes change no number: padded to fixed lengths, the decoder gives
the same outputs and gradients (checked here on the CPU, through the eager fallback that the
graphs replace; the graphs themselves are checked in ``tests/gpu``)."""

import pytest
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


class FakeCapture:
    """Stands in for ``torch.cuda.make_graphed_callables``: records the static inputs of each
    capture and returns the module itself, so replays run eagerly on the CPU."""

    def __init__(self):
        self.shapes: list[tuple] = []

    def __call__(self, module, static, allow_unused_input=False):
        assert allow_unused_input
        self.shapes.append(tuple(tuple(a.shape) for a in static))
        return module


def test_one_graph_per_padded_shape_replayed_and_capped(caplog):
    """Lengths are padded to multiples of pad_to; a padded shape seen before replays its
    graph, a new one is captured, and past max_graphs new shapes run eagerly with one
    warning naming the setting; every path gives the eager model's outputs."""
    torch.manual_seed(0)
    net = EncoderDecoder(input_dim=12, output_dim=12, hidden_dim=8, bidirectional=True,
                         bridge=False, peek=True, attention="additive").train()
    capture = FakeCapture()
    graphs = DecoderGraphs(net, pad_to=4, max_graphs=2, capture=capture)
    batches = [(3, 5, 6), (3, 7, 7), (3, 3, 2), (2, 5, 6)]  # (batch, source, target)
    for i, (b, s, t) in enumerate(batches):
        g = torch.Generator().manual_seed(i)
        src = torch.randint(4, 12, (b, s), generator=g)
        lengths = torch.full((b,), s)
        tgt = torch.randint(4, 12, (b, t), generator=g)
        with caplog.at_level("WARNING", logger="pipeline.accel"):
            out = graphs(src, lengths, tgt)
        assert out.shape == (b, t, 12)
        torch.testing.assert_close(out, net(src, lengths, target=tgt).outputs,
                                   rtol=1e-5, atol=1e-6)
    # (3, 5, 6) and (3, 7, 7) pad to the same (3, 8, 8): one capture; (3, 3, 2) pads to
    # (3, 4, 4): a second; (2, 5, 6) would be a third, past max_graphs: eager.
    assert len(capture.shapes) == len(graphs.graphs) == 2
    memory, mask, prev = capture.shapes[0][:3]
    assert memory[:2] == (3, 8) and mask == (3, 8) and prev == (3, 8)
    assert capture.shapes[1][2] == (3, 4)
    assert [r.getMessage() for r in caplog.records if "accel.pad_to" in r.getMessage()]
    assert graphs.warned


def test_pad_to_is_a_validated_setting(compose_cfg):
    """The warning names accel.pad_to: it is a real key, and validated."""
    from pipeline.config import validate
    from pipeline.errors import ConfigError

    cfg = compose_cfg("accel.pad_to=16")
    validate(cfg)
    assert cfg.accel.pad_to == 16
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg("accel.pad_to=0"))
    assert err.value.key == "accel.pad_to"

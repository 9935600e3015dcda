"""The Keras seq2seq library's calls, as its README and the Keras article print them, build,
map shapes, and train with mse."""

import pytest
import torch

from pipeline.models import AttentionSeq2Seq, Seq2Seq, SimpleSeq2Seq, build_model

KERAS_CALLS = [
    (lambda: SimpleSeq2Seq(input_dim=5, hidden_dim=10, output_length=8, output_dim=8, depth=3), 8),
    (lambda: SimpleSeq2Seq(input_dim=5, hidden_dim=10, output_length=8, output_dim=20,
                           depth=(4, 5)), 20),
    (lambda: Seq2Seq(batch_input_shape=(16, 7, 5), hidden_dim=10, output_length=8,
                     output_dim=20, depth=4), 20),
    (lambda: Seq2Seq(batch_input_shape=(16, 7, 5), hidden_dim=10, output_length=8,
                     output_dim=20, depth=4, peek=True), 20),
    (lambda: AttentionSeq2Seq(input_dim=5, input_length=7, hidden_dim=10, output_length=8,
                              output_dim=20, depth=4), 20),
    (lambda: build_model(5, 8, 10), 5),
    (lambda: build_model(5, 8, 10, cell="gru"), 5),
]


@pytest.mark.slow  # trains each call for steps: seconds each
@pytest.mark.parametrize(("call", "output_dim"), KERAS_CALLS)
def test_keras_call_maps_shapes_and_trains_with_mse(call, output_dim):
    torch.manual_seed(0)
    model = call()
    assert isinstance(model, torch.nn.Module)
    x = torch.randn(16, 7, 5)
    y = torch.tanh(x[:, [6, 5, 4, 3, 2, 1, 0, 0]] @ torch.randn(5, output_dim))
    assert model(x).shape == (16, 8, output_dim)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=0.01)  # the article's compile()
    losses = []
    for _ in range(100):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.93 * losses[0]


def test_simple_seq2seq_depth_pair_builds_the_layers_asked_for():
    """The Keras library built two decoder layers for decoder depth 1."""
    model = SimpleSeq2Seq(input_dim=5, hidden_dim=10, output_length=8, output_dim=20, depth=(4, 5))
    assert model.net.encoder.rnn.num_layers == 4
    assert model.net.decoder.rnn.num_layers == 5
    single = SimpleSeq2Seq(input_dim=5, hidden_dim=10, output_length=8, output_dim=8, depth=1)
    assert single.net.decoder.rnn.num_layers == 1


def test_hidden_dim_defaults_to_output_dim():
    model = Seq2Seq(input_dim=5, output_length=8, output_dim=20)
    assert model.net.hidden_dim == 20


def test_presets_are_the_documented_variants():
    simple = SimpleSeq2Seq(input_dim=5, output_length=8, output_dim=8).net
    assert not simple.decoder.feedback and not simple.bridge
    sutskever = Seq2Seq(input_dim=5, output_length=8, output_dim=8).net
    assert sutskever.decoder.feedback and sutskever.bridge and not sutskever.decoder.peek
    cho = Seq2Seq(input_dim=5, output_length=8, output_dim=8, peek=True).net
    assert cho.decoder.peek
    bahdanau = AttentionSeq2Seq(input_dim=5, output_length=8, output_dim=8).net
    assert bahdanau.decoder.input_feeding and bahdanau.encoder.bidirectional
    assert not bahdanau.bridge


def test_teacher_force_feeds_ground_truth_in_training():
    torch.manual_seed(0)
    model = Seq2Seq(input_dim=5, output_length=8, output_dim=4, teacher_force=True).train()
    x, y = torch.randn(2, 7, 5), torch.randn(2, 8, 4)
    changed = y.clone()
    changed[:, 4] += 1.0
    a, b = model(x, y), model(x, changed)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5], b[:, 5])


def test_keras_only_arguments():
    kw = dict(input_dim=5, output_length=8, output_dim=8)
    Seq2Seq(unroll=True, **kw)  # accepted: no effect in PyTorch
    with pytest.raises(ValueError, match="stateful"):
        Seq2Seq(stateful=True, **kw)
    with pytest.raises(ValueError, match="inner_broadcast_state"):
        Seq2Seq(inner_broadcast_state=False, **kw)
    with pytest.raises(ValueError, match="input_dim"):
        Seq2Seq(output_length=8, output_dim=8)
    with pytest.raises(ValueError, match="input_length=7"):
        AttentionSeq2Seq(input_length=7, **kw)(torch.randn(2, 9, 5))
    with pytest.raises(TypeError, match="input_dims"):  # a misspelt Keras argument
        SimpleSeq2Seq(input_dims=5, output_length=8, output_dim=8)

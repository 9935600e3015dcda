"""The models' semantics: masking, feedback, teacher forcing, peek, attention, bridge, search."""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from pipeline.models import EncoderDecoder
from pipeline.models import encoder as encoder_module
from pipeline.models.attention import Attention
from pipeline.models.search import beam_search

VOCAB = 12


def make(**kw) -> EncoderDecoder:
    torch.manual_seed(0)
    args = dict(kind="tokens", input_dim=VOCAB, output_dim=VOCAB, hidden_dim=16)
    args.update(kw)
    return EncoderDecoder(**args).eval()


def batch(b=4, s=6, t=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, VOCAB, (b, s), generator=g)
    lengths = torch.tensor([s, 3, 1, 5][:b])
    src = src.masked_fill(torch.arange(s)[None] >= lengths[:, None], 0)
    tgt = torch.randint(4, VOCAB, (b, t), generator=g)
    return src, lengths, tgt


ALL = [
    dict(),
    dict(peek=True),
    dict(attention="additive"),
    dict(attention="additive", peek=True, bidirectional=True, bridge=False),
    dict(attention="dot", cell="gru", depth=[2, 3]),
    dict(attention="general", peek=True, cell="gru"),
    dict(feedback=False, bridge=False),
]


@pytest.mark.parametrize("kw", ALL)
def test_shapes(kw):
    model = make(**kw)
    src, lengths, tgt = batch()
    out = model(src, lengths, target=tgt)
    assert out.outputs.shape == (4, 5, VOCAB)
    attn = kw.get("attention", "none") != "none"
    assert (out.attention is not None) == attn
    if attn:
        assert out.attention.shape == (4, 5, 6)


@pytest.mark.parametrize("kw", ALL)
def test_padding_changes_nothing(kw):
    """Appending padding to the sources leaves outputs and attention of real tokens as they were."""
    model = make(**kw)
    src, lengths, tgt = batch()
    padded = torch.cat([src, torch.zeros(4, 3, dtype=torch.long)], dim=1)
    for tf in (1.0, 0.0):
        a = model(src, lengths, target=tgt, teacher_forcing=tf)
        b = model(padded, lengths, target=tgt, teacher_forcing=tf)
        torch.testing.assert_close(a.outputs, b.outputs, rtol=1e-5, atol=1e-6)
        if a.attention is not None:
            torch.testing.assert_close(a.attention, b.attention[..., :6], rtol=1e-5, atol=1e-6)
            assert b.attention[..., 6:].abs().max() == 0


@pytest.mark.parametrize("kind", ["additive", "dot", "general"])
def test_attention_is_a_distribution_over_real_tokens(kind):
    model = make(attention=kind, peek=True)
    src, lengths, tgt = batch()
    weights = model(src, lengths, target=tgt).attention
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, 5))
    pad = torch.arange(6)[None] >= lengths[:, None]
    assert weights.masked_select(pad.unsqueeze(1).expand_as(weights)).abs().max() == 0


def test_attention_score_depends_on_the_query():
    """The Keras library's score had a query term that cancelled in the softmax."""
    attn = Attention("additive", 8)
    memory, mask = torch.randn(1, 5, 8), torch.ones(1, 5, dtype=torch.bool)
    keys = attn.keys(memory)
    _, w1 = attn(torch.randn(1, 1, 8), keys, memory, mask)
    _, w2 = attn(torch.randn(1, 1, 8), keys, memory, mask)
    assert not torch.allclose(w1, w2)


@pytest.mark.parametrize("kw", ALL[:6])
def test_fused_path_equals_step_path(kw):
    """Teacher forcing 1.0 runs the decoder in one RNN call; the step loop gives the same."""
    model = make(**kw)
    src, lengths, tgt = batch()
    fused = model(src, lengths, target=tgt, teacher_forcing=1.0)
    model.fast = False
    stepped = model(src, lengths, target=tgt, teacher_forcing=1.0)
    torch.testing.assert_close(fused.outputs, stepped.outputs, rtol=1e-5, atol=1e-6)


FEEDING = [
    dict(attention="additive", peek=True, bidirectional=True, bridge=False),
    dict(attention="general", peek=True, cell="gru", depth=[2, 3]),
    dict(attention="dot", peek=True, depth=2, dropout=0.3),
    dict(attention="additive", peek=True, bidirectional=True, io_dropout=0.3),
    dict(attention="additive", peek=True, bidirectional=True, directions="split", depth=2),
]
# io_dropout on the paths without input feeding: Luong (fused RNN), Cho (peek), RepeatVector.
IO_DROPOUT = [
    dict(attention="additive", io_dropout=0.3),
    dict(peek=True, depth=2, dropout=0.2, io_dropout=0.3),
    dict(feedback=False, bridge=False, cell="gru", io_dropout=0.3),
]


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("kw", FEEDING + IO_DROPOUT)
def test_fast_path_equals_plain_steps(kw, train):
    """Teacher forcing 1.0 on the fast path (input projection precomputed, cells called
    directly or one fused RNN call, output layer after the loop) equals nn.LSTM/GRU step by
    step, dropout included: outputs, attention, gradients, and the random numbers drawn (so
    later shuffles are unchanged)."""
    model = make(**kw).train(train)
    src, lengths, tgt = batch()
    params = [p for p in model.parameters() if p.requires_grad]

    def run():
        torch.manual_seed(3)
        out = model(src, lengths, target=tgt, teacher_forcing=1.0)
        grads = torch.autograd.grad(out.outputs.square().sum(), params, allow_unused=True)
        return out, grads, torch.rand(3)

    fast = run()
    model.fast = False
    plain = run()
    torch.testing.assert_close(fast[0].outputs, plain[0].outputs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast[0].attention, plain[0].attention, rtol=1e-5, atol=1e-6)
    for a, b in zip(fast[1], plain[1], strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert torch.equal(fast[2], plain[2])


@pytest.mark.parametrize("kw", [dict(), *FEEDING])
def test_cell_steps_decode_like_plain_steps(kw):
    """Greedy and beam search through the cells give what nn.LSTM/GRU steps give."""
    model = make(**kw)
    src, lengths, _ = batch()
    fast = [model.generate(src, lengths, max_len=8, beam_size=k) for k in (1, 3)]
    model.fast = False
    plain = [model.generate(src, lengths, max_len=8, beam_size=k) for k in (1, 3)]
    for a, b in zip(fast, plain, strict=True):
        assert torch.equal(a.sequences, b.sequences)
        torch.testing.assert_close(a.scores, b.scores)


@pytest.mark.parametrize("kw", [dict(), dict(attention="additive", peek=True)])
def test_teacher_forcing_never_leaks_step_t_into_step_t(kw):
    """The Keras library fed y_t at step t; here step t sees only y_<t."""
    model = make(**kw).train()
    src, lengths, tgt = batch()
    changed = tgt.clone()
    changed[:, 2] = (tgt[:, 2] - 4 + 1) % (VOCAB - 4) + 4
    a = model(src, lengths, target=tgt, teacher_forcing=1.0).outputs
    b = model(src, lengths, target=changed, teacher_forcing=1.0).outputs
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3], b[:, 3])


def test_feedback_uses_own_prediction_at_evaluation():
    """At eval the input at step t+1 is the argmax of step t, whatever the target says.

    Seen on the plain path, which embeds its inputs with the embedding layer (the fast path
    looks them up in a projected table, and equals the plain path: tests above)."""
    model = make(fast=False)
    seen = []
    model.decoder.input.register_forward_hook(lambda m, i, o: seen.append(i[0].clone()))
    src, lengths, tgt = batch()
    out = model(src, lengths, target=tgt)  # eval mode: no teacher forcing
    predictions = out.outputs.argmax(-1)
    fed = torch.cat(seen, dim=1)
    assert torch.equal(fed[:, 0], torch.full((4,), model.bos_id))
    assert torch.equal(fed[:, 1:], predictions[:, :-1])


def test_peek_context_reaches_every_step_concatenated():
    model = make(peek=True, bridge=False)
    src, lengths, tgt = batch()
    source, state = model.begin(src, lengths)
    prev = torch.cat([model.start(4, "cpu"), tgt[:, :-1]], 1)
    base, _ = model.decoder.run(prev, state, source, 5)
    source.summary = torch.zeros_like(source.summary)
    zeroed, _ = model.decoder.run(prev, state, source, 5)
    assert ((base - zeroed).abs().amax(dim=(0, 2)) > 1e-6).all()
    assert model.decoder.rnn.input_size == 2 * 16  # [embedding; context], not a sum


def test_bridge_off_starts_the_decoder_at_zeros():
    src, lengths, _ = batch()
    off = make(bridge=False)
    state = off.initial_state(off.encode(src, lengths))
    assert all(s.abs().max() == 0 for s in state)
    on = make(bridge=True)
    enc = on.encode(src, lengths)
    torch.testing.assert_close(on.initial_state(enc)[0], enc.state[0])


def test_deeper_decoder_takes_the_top_encoder_layer_for_extra_layers():
    model = make(depth=[2, 3], cell="gru")
    src, lengths, _ = batch()
    enc = model.encode(src, lengths)
    state = model.initial_state(enc)
    assert state.shape == (3, 4, 16)
    torch.testing.assert_close(state[2], enc.state[1])


def test_bidirectional_backward_direction_reads_from_the_last_real_token():
    model = make(bidirectional=True)
    enc = model.encoder
    src, lengths, _ = batch()
    x = enc.input(src)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    _, (h, _) = enc.rnn(packed)  # (directions, B, H): forward, backward
    backward = torch.nn.LSTM(16, 16, batch_first=True)
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        getattr(backward, name).data = getattr(enc.rnn, name + "_reverse").data
    _, (expected, _) = backward(x[1:2, :3].flip(1))  # row 1 has 3 real tokens
    torch.testing.assert_close(h[1, 1], expected[0, 0])


def test_split_directions_concatenate_two_halves():
    """directions=split: each direction H / 2 wide, the memory and every layer's final state
    the two directions side by side, nothing projected."""
    model = make(bidirectional=True, directions="split", depth=2, attention="additive")
    assert model.encoder.rnn.hidden_size == 8 and model.encoder.merge_out is None
    src, lengths, _ = batch()
    enc = model.encode(src, lengths)
    out, (h, _) = model.encoder.rnn(model.encoder.input(src[:1]))  # row 0 has no padding
    torch.testing.assert_close(enc.memory[:1], out)
    torch.testing.assert_close(enc.state[0][1, 0], torch.cat([h[2, 0], h[3, 0]]))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bf16_encoder_computes_in_bf16_and_hands_back_fp32(cell):
    """rnn_precision=bf16: the RNN runs in bf16 (its results differ from fp32's by
    bf16's rounding, not more), the memory and states come back fp32, and the fp32 weights
    get fp32 gradients close to the fp32 encoder's."""
    src, lengths, _ = batch()
    runs = {}
    for precision in ("fp32", "bf16"):
        model = make(bidirectional=True, depth=2, cell=cell, bridge=True, attention="additive",
                     rnn_precision=precision)
        enc = model.encode(src, lengths)
        state = enc.state if isinstance(enc.state, tuple) else (enc.state,)
        loss = enc.memory.square().sum() + sum(s.square().sum() for s in state)
        grads = torch.autograd.grad(loss, list(model.encoder.rnn.parameters()))
        runs[precision] = enc.memory, state, grads
    (m32, s32, g32), (m16, s16, g16) = runs["fp32"], runs["bf16"]
    assert m16.dtype == torch.float32 and all(s.dtype == torch.float32 for s in s16)
    assert all(g.dtype == torch.float32 for g in g16)
    assert not torch.equal(m16, m32)
    torch.testing.assert_close(m16, m32, atol=3e-2, rtol=3e-2)
    for a, b in zip(s16, s32, strict=True):
        torch.testing.assert_close(a, b, atol=3e-2, rtol=3e-2)
    for a, b in zip(g16, g32, strict=True):
        torch.testing.assert_close(a, b, atol=5e-2 * float(b.abs().max()), rtol=5e-2)


def test_rnn_precision_is_checked():
    with pytest.raises(ValueError, match="half"):
        make(rnn_precision="half")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_encoder_runs_each_length_alone_as_a_packed_sequence_would(cell, monkeypatch):
    """The CPU's one call per distinct length equals one packed call: outputs (zero on
    padding), final states and gradients, for a 2-layer bidirectional stack."""
    model = make(bidirectional=True, depth=2, cell=cell, bridge=True)
    src, lengths, _ = batch()

    def run():
        enc = model.encode(src, lengths)
        state = enc.state if isinstance(enc.state, tuple) else (enc.state,)
        loss = enc.memory.square().sum() + sum(s.square().sum() for s in state)
        return enc, torch.autograd.grad(loss, list(model.encoder.parameters()))

    grouped = run()
    monkeypatch.setattr(encoder_module, "MAX_LENGTH_GROUPS", 0)
    packed = run()
    torch.testing.assert_close(grouped[0].memory, packed[0].memory)
    assert not grouped[0].memory[~grouped[0].mask].any()
    torch.testing.assert_close(grouped[0].state, packed[0].state)
    for a, b in zip(grouped[1], packed[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kw", [dict(), dict(attention="general", peek=True, cell="gru")])
def test_greedy_stops_at_eos_and_beam_is_not_worse(kw):
    model = make(**kw)
    src, lengths, _ = batch()
    greedy = model.generate(src, lengths, max_len=8, return_attention=True)
    beam = model.generate(src, lengths, max_len=8, beam_size=4)
    assert (beam.scores >= greedy.scores - 1e-5).all()
    for row, n in zip(greedy.sequences, greedy.lengths, strict=True):
        assert (row[n:] == model.pad_id).all()
        assert (row[: n - 1] != model.eos_id).all()
        assert row[n - 1] == model.eos_id or n == 8


def test_beam_size_one_equals_greedy():
    model = make(attention="additive")
    src, lengths, _ = batch()
    a = model.generate(src, lengths, max_len=8)
    b = beam_search(model, *model.begin(src, lengths), 8, beam_size=1)
    assert torch.equal(a.sequences, b.sequences)
    torch.testing.assert_close(a.scores, b.scores)


@pytest.mark.parametrize(
    "kw", [*ALL, dict(bidirectional=True, bridge=False, peek=True, attention="additive"),
           dict(bidirectional=True, peek=True), dict(bidirectional=True, feedback=False)],
)
def test_every_parameter_gets_a_gradient(kw):
    """DDP refuses parameters that never reach the loss; none are built."""
    model = make(**kw).train()
    src, lengths, tgt = batch()
    model(src, lengths, target=tgt).outputs.sum().backward()
    unused = [name for name, p in model.named_parameters() if p.grad is None]
    assert not unused

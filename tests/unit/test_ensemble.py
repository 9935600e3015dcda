"""An ensemble of token models: K copies of one model decode as that model; two models
average their log-probabilities at each step, each with its own state and attention."""

import pytest
import torch

from pipeline.models import EncoderDecoder
from pipeline.models.ensemble import Ensemble

VOCAB = 12
WIRINGS = [dict(attention="additive", peek=True, bidirectional=True, bridge=False),
           dict(cell="gru", depth=[2, 1]), dict(attention="dot", cell="lstm", depth=2)]


def make(seed: int, **kw) -> EncoderDecoder:
    torch.manual_seed(seed)
    return EncoderDecoder(kind="tokens", input_dim=VOCAB, output_dim=VOCAB, hidden_dim=16,
                          output_length=7, **kw).eval()


def source():
    g = torch.Generator().manual_seed(3)
    src = torch.randint(4, VOCAB, (4, 6), generator=g)
    lengths = torch.tensor([6, 3, 1, 5])
    return src.masked_fill(torch.arange(6)[None] >= lengths[:, None], 0), lengths


@pytest.mark.parametrize("wiring", WIRINGS)
@pytest.mark.parametrize("beam", [1, 3])
def test_k_copies_of_one_model_decode_as_that_model(wiring, beam):
    model = make(0, **wiring)
    src, lengths = source()
    alone = model.generate(src, lengths, beam_size=beam)
    together = Ensemble([model, make(0, **wiring), make(0, **wiring)]).generate(
        src, lengths, beam_size=beam)
    assert torch.equal(together.sequences, alone.sequences)
    assert torch.equal(together.lengths, alone.lengths)
    torch.testing.assert_close(together.scores, alone.scores, rtol=1e-5, atol=1e-5)


def test_two_models_average_their_log_probabilities_at_each_step():
    a, b = make(0, attention="additive", peek=True), make(1, cell="gru")
    ensemble = Ensemble([a, b])
    src, lengths = source()
    source_a, state_a = a.begin(src, lengths)
    source_b, state_b = b.begin(src, lengths)
    both_source, both_state = ensemble.begin(src, lengths)
    prev = a.start(4, src.device)
    for _ in range(4):  # each model keeps its own state along the way
        out_a, state_a, _ = a.step(prev, state_a, source_a)
        out_b, state_b, _ = b.step(prev, state_b, source_b)
        out, both_state, _ = ensemble.step(prev, both_state, both_source)
        mean = (out_a.log_softmax(-1) + out_b.log_softmax(-1)) / 2
        torch.testing.assert_close(out, mean)
        prev = mean.argmax(-1, keepdim=True)
    assert not torch.allclose(out_a.log_softmax(-1), out_b.log_softmax(-1))


def test_models_with_other_vocabularies_are_refused():
    other = EncoderDecoder(kind="tokens", input_dim=VOCAB, output_dim=VOCAB + 1, hidden_dim=16)
    with pytest.raises(ValueError, match="share their vocabularies"):
        Ensemble([make(0), other])


def test_scoring_a_target_averages_the_models_log_probabilities():
    a, b = make(0, attention="additive", peek=True), make(1, cell="gru")
    src, lengths = source()
    target = torch.randint(4, VOCAB, (4, 5))
    scored = Ensemble([a, b])(src, lengths, target=target).outputs
    mean = (a(src, lengths, target=target, teacher_forcing=1.0).outputs.log_softmax(-1)
            + b(src, lengths, target=target, teacher_forcing=1.0).outputs.log_softmax(-1)) / 2
    torch.testing.assert_close(scored, mean)

"""The LightningModule's loss: label smoothing trains, the plain cross-entropy reports."""

import pytest
import torch
import torch.nn.functional as F

from pipeline.data import Batch
from pipeline.data.tokenize import make_tokenizer
from pipeline.data.vocab import Vocab
from pipeline.module import Seq2SeqModule

NET = dict(_target_="pipeline.models.EncoderDecoder", input_dim=12, output_dim=12,
           hidden_dim=16, attention="additive", peek=True)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_label_smoothing_enters_the_training_loss_only(smoothing):
    module = Seq2SeqModule(NET, label_smoothing=smoothing)
    logged = {}
    module.log = lambda name, value, **_: logged.setdefault(name, value)
    g = torch.Generator().manual_seed(0)
    src, tgt = torch.randint(4, 12, (6, 5), generator=g), torch.randint(4, 12, (6, 4), generator=g)
    batch = Batch(src, torch.full((6,), 5), tgt, torch.arange(6))

    loss = module.training_step(batch, 0)
    logits = module.net(src, batch.src_lengths, target=tgt).outputs.flatten(0, 1)
    expected = F.cross_entropy(logits, tgt.flatten(), label_smoothing=smoothing)
    torch.testing.assert_close(loss, expected)
    if smoothing:
        assert not torch.allclose(loss, F.cross_entropy(logits, tgt.flatten()))

    module.eval()
    with torch.no_grad():
        module._evaluate(batch, "val")
    plain = F.cross_entropy(module.net(src, batch.src_lengths, target=tgt,
                                       teacher_forcing=1.0).outputs.flatten(0, 1), tgt.flatten())
    torch.testing.assert_close(logged["val/loss"], plain)


def test_the_training_loss_weighs_every_token_alike_whatever_its_batch():
    """With the training targets' mean length the training loss is the batch's summed token
    losses over sequences x that length: a batch of long targets weighs more than one of
    short targets, token for token the same; val/loss stays the per-token mean."""
    module = Seq2SeqModule(NET, mean_target_len=3.0)
    module.log = lambda *_, **__: None
    g = torch.Generator().manual_seed(0)
    src = torch.randint(4, 12, (4, 5), generator=g)
    tgt = torch.randint(4, 12, (4, 6), generator=g)
    tgt[2:, 2:] = 0  # two sequences of 2 tokens, two of 6
    batch = Batch(src, torch.full((4,), 5), tgt, torch.arange(4))
    loss = module.training_step(batch, 0)
    logits = module.net(src, batch.src_lengths, target=tgt).outputs.flatten(0, 1)
    summed = F.cross_entropy(logits, tgt.flatten(), ignore_index=0, reduction="sum")
    torch.testing.assert_close(loss, summed / (4 * 3.0))
    mean = module.loss(module.net(src, batch.src_lengths, target=tgt).outputs, tgt)
    torch.testing.assert_close(mean, summed / 16)


def test_validation_decodes_greedily_and_test_with_the_beam():
    module = Seq2SeqModule(NET, beam_size=4, val_beam_size=1, max_decode_len=6)
    asked = []
    generate = module.net.generate

    def recording(*args, beam_size=1, **kwargs):
        asked.append(beam_size)
        return generate(*args, beam_size=beam_size, **kwargs)

    module.net.generate = recording
    src = torch.randint(4, 12, (3, 5))
    batch = Batch(src, torch.full((3,), 5), torch.randint(4, 12, (3, 4)), torch.arange(3))
    module.decode(batch, "val")
    module.decode(batch, "test")
    assert asked == [1, 4]


@pytest.mark.parametrize(("kind", "bleu"), [("chars", "char"), ("words", "13a")])
def test_bleu_counts_characters_where_the_targets_are_characters(kind, bleu):
    text = {"tokenizer": make_tokenizer(kind).to_json(), "symbols": Vocab("abcdefgh").itos}
    module = Seq2SeqModule(NET, text=text)
    assert {t.tokenize for t in module.texts.values()} == {bleu}

"""A CMUdict subset written as TSV and read by data=files gives what data=g2p gives on the
same words: the same splits, examples, references, symbols and scores."""

from __future__ import annotations

import pytest
import torch

from pipeline.data.datamodule import Seq2SeqDataModule
from pipeline.data.tasks import g2p
from pipeline.data.vocab import SPECIALS
from pipeline.metrics import SequenceAccuracy, TokenAccuracy

pytestmark = pytest.mark.slow  # reads the whole CMU dictionary


def subset() -> dict[str, list[str]]:
    """Words of at most 5 letters starting with a-d, and their pronunciations."""
    return {w: p for w, p in g2p.G2P().entries().items() if len(w) <= 5 and w[0] in "abcd"}


def test_files_on_a_cmudict_tsv_match_g2p(tmp_path, monkeypatch):
    words = subset()
    ranked = sorted(words, key=g2p.word_rank)
    path = tmp_path / "cmudict.tsv"
    path.write_text("source\ttarget\n" + "".join(f"{w}\t{p}\n" for w in ranked
                                                 for p in words[w]))
    files = Seq2SeqDataModule(
        "files", train=str(path), source_tokenizer="chars", target_tokenizer="words",
        split_salt=g2p.SALT, val_fraction=0.05, test_fraction=0.05, train_size=10**7,
        val_size=10**7, test_size=10**7)
    files.prepare_data()
    monkeypatch.setattr(g2p, "dictionary", lambda: {
        w: tuple(" ".join(p.split()) for p in words[w]) for w in words})
    reference = Seq2SeqDataModule("g2p", train_size=10**7, val_size=10**7, test_size=10**7)
    reference.prepare_data()
    (fs, ft), (gs, gt) = files.vocabs, reference.vocabs
    for name in ("train", "val", "test"):
        a, b = files.dataset(name), reference.dataset(name)
        assert len(a) == len(b) > 10
        for i in range(len(a)):
            assert fs.decode(a[i]["src"]) == gs.decode(b[i]["src"])
            assert [ft.decode(r) for r in a[i]["refs"]] == [gt.decode(r) for r in b[i]["refs"]]
    train = reference.data["splits"]["train"]
    seen = {gt.itos[i] for i in train["tgt"].values.unique().tolist()}
    assert set(ft.itos[4:]) == seen - set(SPECIALS)  # symbols of the training targets
    assert set(fs.itos) <= set(gs.itos)

    # The same predictions score the same: right for every other word, one phoneme off else.
    def scores(dm):
        test, (_, tgt) = dm.dataset("test"), dm.vocabs
        batch = [test[i] for i in range(len(test))]
        width = max(len(r) for x in batch for r in x["refs"])
        pred = torch.full((len(batch), width), 0)
        refs = torch.zeros((len(batch), 4, width), dtype=torch.long)
        for i, x in enumerate(batch):
            row = x["tgt"].clone()
            if i % 2:
                row[0] = tgt.stoi["AA"] if tgt.itos[row[0]] != "AA" else tgt.stoi["IY"]
            pred[i, : len(row)] = row
            for j in range(4):
                r = x["refs"][min(j, len(x["refs"]) - 1)]
                refs[i, j, : len(r)] = r
        target = refs[:, 0]
        seq, tok = SequenceAccuracy(), TokenAccuracy()
        seq.update(pred, target, refs)
        tok.update(pred, target, refs)
        return float(seq.compute()), float(tok.compute())

    assert scores(files) == scores(reference)
    assert 0.4 < scores(files)[0] < 0.6

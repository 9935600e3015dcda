"""The benchmark: the plain reference is the same model as the project's, and a tiny run
writes the JSON with every required key."""

import json

import pytest
import torch
import torch.nn.functional as F

from bench.levers import LEVERS
from bench.networks import make_batch, make_model
from bench.reference import TutorialAttention

REQUIRED = ("pipeline_overhead_ratio", "attention_speedup_vs_reference", "beam5_vs_greedy_cost",
            "data_headroom", "files_cold_s", "files_warm_s", "files_peak_rss_gb")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_reference_and_project_train_identically(cell):
    """Same weights, same batches: the same outputs and the same loss over a few Adam steps."""
    project = make_model("additive", cell, 16).train()
    reference = TutorialAttention(16, 16, 16, cell).copy_from(project).train()
    src, lengths, tgt = make_batch(7, batch=8)
    losses = {}
    for name, model, forward in [
        ("project", project, lambda: project(src, lengths, target=tgt).outputs),
        ("reference", reference, lambda: reference(src, lengths, tgt)),
    ]:
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        losses[name] = []
        for _ in range(4):
            loss = F.cross_entropy(forward().flatten(0, 1), tgt.flatten(), ignore_index=0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[name].append(loss.item())
    assert losses["project"] == pytest.approx(losses["reference"], rel=1e-4)
    assert losses["project"][-1] < losses["project"][0]


@pytest.mark.slow
def test_tiny_bench_writes_the_json_and_the_table(tmp_path):
    from bench.__main__ import main

    res = main(["--tiny", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "latest.json").read_text())
    assert len(list(tmp_path.glob("*.json"))) == 2
    for key in REQUIRED:
        assert saved[key] == pytest.approx(res[key]) and saved[key] > 0
    assert "n/a (no GPU)" in saved["table"] or torch.cuda.is_available()
    assert (tmp_path / "latest.md").read_text() == saved["table"] + "\n"
    assert saved["reference"][0]["same_outputs"]
    assert set(saved["levers"]["effect"]) == set(LEVERS)
    assert all(v > 0 for v in saved["levers"]["effect"].values())


def test_the_peer_bench_reads_opennmt_reports_and_writes_its_config(tmp_path):
    """Target tokens and seconds from OpenNMT-py's report lines, the first window left out;
    its config asks for the model the project's default matches."""
    from bench.peer import peer_config, window_rates

    log = "\n".join(
        f"[INFO] Step {s}/  300; acc: 90.0; ppl: 1.3; xent: 0.3; lr: 0.00300; sents: 3200; "
        f"bsz:  400/ {t}/64; 9000/{r} tok/s;     {s // 10} sec;"
        for s, t, r in [(50, 460, 100), (100, 500, 5000), (150, 400, 8000)])
    tokens, seconds = window_rates(log)
    assert tokens == 500 * 50 + 400 * 50
    assert seconds == pytest.approx(500 * 50 / 5000 + 400 * 50 / 8000)
    files = {k: tmp_path / k for k in ("train.src", "train.tgt", "val.src", "val.tgt")}
    config = json.loads(peer_config(tmp_path, files, 1563).read_text())
    assert (config["encoder_type"], config["global_attention"], config["input_feed"],
            config["hidden_size"], config["batch_size"], config["train_steps"]) == (
        "brnn", "mlp", 1, 128, 64, 1563)


def test_the_bf16_lever_flips_both_recurrent_parts_and_restores_them():
    from bench.levers import _switch
    from pipeline.models import EncoderDecoder

    for recipe, flipped in (("fp32", "bf16"), ("bf16", "fp32")):
        net = EncoderDecoder(hidden_dim=8, attention="additive", peek=True,
                             rnn_precision=recipe)
        with _switch("bf16 recurrent layers", net):
            assert net.encoder.precision == flipped == net.decoder.precision
        assert net.encoder.precision == recipe == net.decoder.precision

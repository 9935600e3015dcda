"""The benchmark: the plain reference is the same model as the project's, and a tiny run
writes the JSON with every required key."""

import json

import pytest
import torch
import torch.nn.functional as F

from pipeline.bench.networks import make_batch, make_model
from pipeline.bench.reference import TutorialAttention

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
    from pipeline.bench.__main__ import main

    res = main(["--tiny", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "latest.json").read_text())
    assert len(list(tmp_path.glob("*.json"))) == 2
    for key in REQUIRED:
        assert saved[key] == pytest.approx(res[key]) and saved[key] > 0
    assert "n/a (no GPU)" in saved["table"] or torch.cuda.is_available()
    assert (tmp_path / "latest.md").read_text() == saved["table"] + "\n"
    assert saved["reference"][0]["same_outputs"]

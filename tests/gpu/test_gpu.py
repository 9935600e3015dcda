"""On an NVIDIA GPU: every variant trains, decodes and matches its plain path; the pipeline
runs end to end (``make gpu-check``). Skipped with the reason where CUDA is absent."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from mlflow import MlflowClient

from pipeline.accel import DecoderGraphs
from pipeline.models import EncoderDecoder
from tests.helpers import run_cli
from tests.helpers.gpu_runs import GPU_DDP, GPU_MULTIRUN, GPU_TRAININGS
from tests.helpers.torchrun import Hosts, the_run

pytestmark = pytest.mark.gpu

VOCAB = 20
VARIANTS = {
    "simple": dict(feedback=False, bridge=False),
    "seq2seq": dict(),
    "peek": dict(peek=True),
    "additive": dict(attention="additive"),
    "dot": dict(attention="dot"),
    "general": dict(attention="general"),
    "additive-peek": dict(attention="additive", peek=True, bidirectional=True, bridge=False),
    "dot-peek": dict(attention="dot", peek=True),
    "general-peek": dict(attention="general", peek=True),
    "gru-d2-peek": dict(cell="gru", depth=2, peek=True),
    "gru-d2x3-additive-peek": dict(cell="gru", depth=[2, 3], attention="additive", peek=True),
    "lstm-d2-bi-general-peek": dict(depth=2, bidirectional=True, attention="general",
                                    peek=True),
    "lstm-d2x3-bi": dict(depth=[2, 3], bidirectional=True),
}


@pytest.fixture(autouse=True)
def exact_fp32():
    """fp32 without TF32, so a fast path and the plain one agree to 1e-5."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(before)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-12))


def batch(device="cuda", b=8, s=9, t=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, s + 1, (b,), generator=g)
    lengths[0] = s
    src = torch.randint(4, VOCAB, (b, s), generator=g)
    src = src.masked_fill(torch.arange(s)[None] >= lengths[:, None], 0)
    tgt = torch.randint(4, VOCAB, (b, t), generator=g)
    return src.to(device), lengths, tgt.to(device)


def make(kw, device="cuda"):
    torch.manual_seed(0)
    return EncoderDecoder(input_dim=VOCAB, output_dim=VOCAB, hidden_dim=32, **kw).to(device)


@pytest.mark.parametrize("name", VARIANTS)
def test_fast_paths_equal_the_plain_path_on_cuda(name):
    """Outputs and gradients within 1e-5 relative error; greedy and beam decodes equal."""
    model = make(VARIANTS[name]).train()
    src, lengths, tgt = batch()
    params = list(model.parameters())
    runs = []
    for fast in (True, False):
        model.fast = fast
        out = model(src, lengths, target=tgt, teacher_forcing=1.0)
        grads = torch.autograd.grad(out.outputs.square().sum(), params, allow_unused=True)
        model.eval()
        decodes = [model.generate(src, lengths, max_len=10, beam_size=k) for k in (1, 3)]
        model.train()
        runs.append((out, grads, decodes))
    (fast, fast_grads, fast_dec), (plain, plain_grads, plain_dec) = runs
    assert relative_error(fast.outputs, plain.outputs) <= 1e-5
    for a, b in zip(fast_grads, plain_grads, strict=True):
        assert (a is None) == (b is None)
        if a is not None and b.norm() > 0:
            assert relative_error(a, b) <= 1e-5
    for a, b in zip(fast_dec, plain_dec, strict=True):
        assert torch.equal(a.sequences, b.sequences)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_variant_trains_and_decodes(name, dtype):
    """A few Adam steps (autocast for bf16), teacher forcing 1 and 0.5, then greedy and beam."""
    model = make(VARIANTS[name]).train()
    src, lengths, tgt = batch()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for tf in (1.0, 1.0, 0.5, 1.0):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            out = model(src, lengths, target=tgt, teacher_forcing=tf).outputs
            loss = F.cross_entropy(out.flatten(0, 1).float(), tgt.flatten(), ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        for k in (1, 3):
            gen = model.generate(src, lengths, max_len=10, beam_size=k)
            assert gen.sequences.shape[0] == src.shape[0]


@pytest.mark.parametrize("kw", [VARIANTS["additive-peek"], VARIANTS["gru-d2x3-additive-peek"],
                                VARIANTS["dot-peek"]], ids=["lstm-additive", "gru-d2x3", "dot"])
def test_cuda_graphs_equal_the_eager_step(kw):
    """Replayed graphs give the eager outputs and gradients, across batch shapes (new shapes
    capture new graphs; a shape seen before replays)."""
    model = make(kw).train()
    graphs = DecoderGraphs(model, pad_to=8)
    params = list(model.parameters())
    for seed, (b, s, t) in enumerate([(8, 9, 7), (8, 5, 12), (8, 9, 7), (3, 9, 7)]):
        src, lengths, tgt = batch(b=b, s=s, t=t, seed=seed)
        assert graphs.applies(src)
        eager = model(src, lengths, target=tgt).outputs
        eager_grads = torch.autograd.grad(eager.square().sum(), params, allow_unused=True)
        replayed = graphs(src, lengths, tgt)
        graph_grads = torch.autograd.grad(replayed.square().sum(), params, allow_unused=True)
        assert relative_error(replayed, eager) <= 1e-5
        for a, e in zip(graph_grads, eager_grads, strict=True):
            if e is not None and e.norm() > 0:
                assert relative_error(a, e) <= 1e-5
    assert len(graphs.graphs) == 3


def finished_run(tmp_path, *overrides):
    result = run_cli(*overrides, output_dir=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return client, runs


@pytest.mark.slow
@pytest.mark.parametrize("name", GPU_TRAININGS)
def test_training_on_the_gpu_finishes_with_its_metrics(tmp_path, name):
    _, runs = finished_run(tmp_path, *GPU_TRAININGS[name])
    (run,) = runs
    assert run.info.status == "FINISHED"
    assert {"train/loss_epoch", "val/loss", "val/seq_acc", "test/seq_acc"} <= set(
        run.data.metrics)
    assert any(k.startswith("system/gpu") for k in run.data.metrics)


@pytest.mark.slow
def test_a_two_job_multirun_on_the_gpu(tmp_path):
    _, runs = finished_run(tmp_path, *GPU_MULTIRUN)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)


TWO_GPUS = pytest.mark.skipif(
    torch.cuda.device_count() < 2,
    reason=f"DDP over NCCL needs 2 GPUs; this machine has {torch.cuda.device_count()}")


@pytest.mark.slow
@TWO_GPUS
def test_ddp_on_two_gpus_trains_one_run(tmp_path):
    """``trainer=ddp``: every GPU of the machine (here 2), one process each, NCCL; one
    FINISHED run with world size 2."""
    _, runs = finished_run(tmp_path, *GPU_DDP)
    (run,) = runs
    assert run.info.status == "FINISHED" and run.data.tags["world_size"] == "2"


@pytest.mark.slow
@TWO_GPUS
def test_two_torchrun_hosts_of_one_gpu_each_train_one_run(tmp_path):
    """Two torchrun commands as two hosts of one GPU each (``trainer=multinode``, NCCL)
    train one model as one FINISHED run of world size 2, with GPU metrics."""
    codes = Hosts(tmp_path, "trainer.max_epochs=2", gpus=True).start().wait()
    assert codes == [0, 0], (tmp_path / "host0.err").read_text()[-3000:]
    _, run = the_run(tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags["world_size"] == "2"
    assert any(k.startswith("system/gpu") for k in run.data.metrics)

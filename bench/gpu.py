"""GPU benchmarks (``make bench`` on a GPU, and ``make gpu-check``): the attention model's
training throughput against the fused seq2seq model's, eager and with CUDA graphs, fp32 and
bf16, and one g2p epoch through the whole pipeline with the GPU's utilisation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from mlflow import MlflowClient

from bench.networks import make_batch, make_model
from bench.table import table
from bench.timing import compare
from pipeline.accel import DecoderGraphs

ROOT = Path(__file__).resolve().parents[1]
# The sizes the GPU section measures: (hidden, length, batch, precision).
SETTINGS = [(512, 50, 64, "fp32"), (512, 50, 256, "fp32"), (512, 50, 256, "bf16")]


def train_step(model, forward, tgt, bf16: bool):
    """One Adam step (fused, as Lightning would pick on CUDA) of ``forward()``'s logits."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)

    def run():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            logits = forward()
            loss = F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(), ignore_index=0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        torch.cuda.synchronize()
    return run


def contenders(hidden: int, length: int, batch: int, bf16: bool) -> dict:
    """Training steps of seq2seq (one fused cuDNN call per RNN) and of the default attention
    model, eager and replaying CUDA graphs, on one batch."""
    src, lengths, tgt = make_batch(length, batch=batch, device="cuda")
    fused = make_model("seq2seq", "lstm", hidden, "cuda").train()
    eager = make_model("additive", "lstm", hidden, "cuda").train()
    graphed = make_model("additive", "lstm", hidden, "cuda").train()
    graphs = DecoderGraphs(graphed)
    return {
        "seq2seq": train_step(fused, lambda: fused(src, lengths, target=tgt).outputs, tgt, bf16),
        "attention": train_step(eager, lambda: eager(src, lengths, target=tgt).outputs, tgt,
                                bf16),
        "attention+graphs": train_step(graphed, lambda: graphs(src, lengths, tgt), tgt, bf16),
    }


def throughput(repeats: int) -> list[dict]:
    """Sequences per second of each contender at each of ``SETTINGS``, side by side."""
    rows = []
    for hidden, length, batch, precision in SETTINGS:
        times = compare(contenders(hidden, length, batch, precision == "bf16"),
                        repeats=repeats, warmup=3)
        for name, seconds in times.items():
            rows.append(dict(model=name, hidden=hidden, length=length, batch=batch,
                             precision=precision, seq_per_s=batch / seconds,
                             vs_seq2seq=times["seq2seq"] / seconds))
    return rows


def g2p_overrides(cuda_graphs: bool, epochs: int = 2) -> list[str]:
    """The g2p recipe on one GPU for ``epochs`` epochs, without the per-epoch last.ckpt
    (composed and validated on a CPU by the fast tests)."""
    return ["experiment=g2p", "trainer=gpu", f"trainer.max_epochs={epochs}",
            f"accel.cuda_graphs={str(cuda_graphs).lower()}", "~callbacks.last_checkpoint"]


def g2p_epoch(cuda_graphs: bool, epochs: int = 2) -> dict:
    """``make train ARGS="experiment=g2p trainer=gpu"`` for ``epochs`` epochs into a fresh
    store: the last epoch's seconds (train + validation) and the GPU utilisation MLflow's
    system metrics recorded."""
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "SEQ2SEQ_OUTPUT_DIR": out}
        cmd = [sys.executable, "-m", "pipeline.train", *g2p_overrides(cuda_graphs, epochs)]
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode:
            return dict(error=done.stderr[-2000:])
        client = MlflowClient(f"sqlite:///{out}/mlflow.db")
        (run,) = client.search_runs([client.get_experiment_by_name("seq2seq-g2p").experiment_id])
        epoch_s = [m.value for m in client.get_metric_history(run.info.run_id, "time/epoch_s")]
        util = [m.value for key in run.data.metrics if key.startswith("system/gpu_0_util")
                for m in client.get_metric_history(run.info.run_id, key)]
        return dict(cuda_graphs=cuda_graphs, epoch_s=epoch_s[-1] if epoch_s else None,
                    gpu_utilisation=sum(util) / len(util) if util else None,
                    test_wer=run.data.metrics.get("test/wer"))


def run(repeats: int, with_g2p: bool = True) -> tuple[dict, list[tuple[str, str, str]]]:
    """The GPU section: results and table rows (section, measure, result)."""
    res: dict = {"device": torch.cuda.get_device_name(), "throughput": throughput(repeats)}
    rows = []
    by = {(r["model"], r["batch"], r["precision"]): r for r in res["throughput"]}
    for (model, batch, precision), r in by.items():
        ratio = "" if model == "seq2seq" else f" = {r['vs_seq2seq']:.2f}x seq2seq"
        rows.append(("8 GPU", f"{model} h512 len50 batch {batch} {precision}",
                     f"{r['seq_per_s']:.0f} seq/s{ratio}"))
    for model in ("attention", "attention+graphs"):
        gain = by[(model, 256, "bf16")]["seq_per_s"] / by[(model, 256, "fp32")]["seq_per_s"]
        res[f"bf16_vs_fp32/{model}"] = gain
        rows.append(("8 GPU", f"{model} batch 256: bf16-mixed / fp32", f"{gain:.2f}x"))
    if with_g2p:
        for graphs in (False, True):
            g = g2p_epoch(graphs)
            res[f"g2p/cuda_graphs={graphs}"] = g
            rows.append(("8 GPU", f"g2p epoch, accel.cuda_graphs={str(graphs).lower()}",
                         g.get("error", "")[-200:] or f"{g['epoch_s']:.1f} s, GPU "
                         f"{g['gpu_utilisation'] or float('nan'):.0f} % utilised"))
    return res, rows


def check(repeats: int = 5) -> int:
    """``make gpu-check``: the gpu tests, then this section; one table. Returns the status."""
    if not torch.cuda.is_available():
        print("make gpu-check needs an NVIDIA GPU: CUDA is not available to torch "
              f"{torch.__version__} here")
        return 2
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/gpu",
                            "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True)
    summary = (tests.stdout.strip().splitlines() or ["no output"])[-1]
    res, rows = run(repeats)
    rows.insert(0, ("8 GPU", "pytest -m gpu", summary))
    print(tests.stdout[-4000:] if tests.returncode else "", end="")
    print(table(rows, 0, res["device"]))
    out = Path(os.environ.get("SEQ2SEQ_OUTPUT_DIR", ROOT / "outputs")) / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu-check.json").write_text(json.dumps({**res, "tests": summary}, indent=2))
    return tests.returncode

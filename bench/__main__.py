"""``python -m bench [--full] [--sweep] [--gpu-check]``: print the table, write the
JSON. On a GPU the table gains the GPU section (``bench/gpu.py``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import subprocess
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

import torch

from bench import gpu, levers, loop, networks, user_files
from bench.table import table
from pipeline.logs import quiet

# The targets each ratio is held to: (key, comparison, bound).
# (The tutorial-style reference of section 3 is a correctness oracle; the speed target is
# OpenNMT-py's, make bench-peer.)
TARGETS = {"pipeline_overhead_ratio": ("<=", 1.05),
           "beam5_vs_greedy_cost": ("<", 5.0), "data_headroom": (">=", 10.0),
           "files_cold_s": ("<=", 90.0), "files_warm_s": ("<=", 15.0),
           "files_peak_rss_gb": ("<=", 4.0)}
PROFILES = {  # quick (default), --full, and --tiny (the smoke test)
    "quick": dict(sizes=[(128, 20)], reference=[(128, 20)], repeats=5, epoch_size=2000,
                  epoch_repeats=5, compile=False, pairs=1_000_000, predictions=1000,
                  tokenizers=("chars", "bpe"), levers={}),
    "full": dict(sizes=[(128, 20), (512, 50)], reference=[(128, 20), (512, 50)], repeats=5,
                 epoch_size=10000, epoch_repeats=3, compile=True, pairs=1_000_000,
                 predictions=5000, tokenizers=("chars", "bpe"),
                 levers=dict(batches=100, repeats=5)),
    "tiny": dict(sizes=[(16, 5)], reference=[(16, 5)], repeats=1, epoch_size=128,
                 epoch_repeats=1, compile=False, pairs=500, predictions=32,
                 tokenizers=("chars",),
                 levers=dict(batches=2, repeats=1, max_len=10, train_size=256)),
}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines
                   if line.startswith("model name"))
    card = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s), "
            f"{card}; torch {torch.__version__}")


def sweep_scaling(extra: list[str]) -> dict:
    """Wall time of the default sweep with 1 and 2 parallel jobs (subprocesses)."""
    times = {}
    for jobs in (1, 2):
        cmd = [sys.executable, "-m", "pipeline.train", "-m", "hparams_search=grid", *extra]
        if jobs > 1:
            cmd += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"]
        start = time.perf_counter()
        subprocess.run(cmd, check=False, capture_output=True)
        times[jobs] = time.perf_counter() - start
    return dict(jobs1_s=times[1], jobs2_s=times[2], speedup=times[1] / times[2])


def verdict(key: str, value: float) -> str:
    op, bound = TARGETS[key]
    ok = value <= bound if op == "<=" else value >= bound if op == ">=" else value < bound
    return f"{op} {bound:g}: {'met' if ok else 'MISSED'}"


Rows = list[tuple[str, str, str]]


def overhead_section(p: dict, res: dict) -> Rows:
    """1: a pipeline epoch against a plain PyTorch epoch, and the per-run costs."""
    over = loop.overhead(p["epoch_size"], p["epoch_repeats"])
    torch.use_deterministic_algorithms(False)  # the trainer's deterministic=true stays set
    res["pipeline_overhead_ratio"] = over["ratio"]
    res["overhead"] = over
    return [("1 pipeline overhead", f"epoch ({over['batches']} batches + val + checkpoint), "
             "pipeline / plain loop", f"{over['ratio']:.3f} "
             f"({verdict('pipeline_overhead_ratio', over['ratio'])})"),
            ("1 pipeline overhead", "1-epoch fit with per-run costs / plain epoch",
             f"{over['fit_ratio']:.3f} (+{over['fixed_per_run_s']:.2f} s per run)")]


def throughput_section(p: dict, res: dict) -> Rows:
    """2: training sequences per second of every model family, LSTM and GRU."""
    res["throughput"] = networks.throughput(p["sizes"], ("lstm", "gru"), p["repeats"])
    return [("2 training throughput", f"{r['variant']} {r['cell']} h{r['hidden']} "
             f"len{r['length']}", f"{r['seq_per_s']:.0f} seq/s") for r in res["throughput"]]


def reference_section(p: dict, res: dict) -> Rows:
    """3: the attention model against the tutorial-style one, step by step of the
    optimisation; with the full profile, torch.compile of the attention step too."""
    refs = [networks.against_reference(h, n, cell, 2 * p["repeats"] - 1)
            for h, n in p["reference"] for cell in ("lstm", "gru")]
    res["reference"] = refs
    res["attention_speedup_vs_reference"] = min(r["speedup"] for r in refs)
    rows = []
    for r in refs:
        name = f"{r['cell']} h{r['hidden']} len{r['length']}"
        rows += [("3 vs tutorial Bahdanau", f"{name}: keys precomputed",
                  f"{r['keys_precomputed']:.2f}x"),
                 ("3 vs tutorial Bahdanau", f"{name}: + fused input proj/cells/output",
                  f"{r['fast_steps']:.2f}x"),
                 ("3 vs tutorial Bahdanau", f"{name}: total (same outputs: "
                  f"{r['same_outputs']})", f"{r['speedup']:.2f}x")]
    if p["compile"]:
        comp = networks.compiled_attention(*p["reference"][0], p["repeats"])
        res["torch_compile_attention"] = comp
        rows.append(("3 vs tutorial Bahdanau", "torch.compile of the attention step",
                     f"{comp['speedup']:.2f}x (compile {comp['compile_s']:.0f} s, not used)"))
    return rows


def levers_section(p: dict, res: dict) -> Rows:
    """2: each training-speed lever of the defaults flipped, side by side."""
    lev = res["levers"] = levers.effects(**p["levers"])
    rows = [("2 speed levers", f"defaults, {lev['task']}, attention h128 batch 64",
             f"{lev['tok_per_s']['recipe']:.0f} target tok/s")]
    for lever, against in levers.LEVERS.items():
        on = "defaults" if lev["on_in_recipe"][lever] else against
        off = against if lev["on_in_recipe"][lever] else "defaults"
        rows.append(("2 speed levers", f"{lever}: {on} / {off}",
                     f"{lev['effect'][lever]:.2f}x"))
    for lever, diff in lev["bf16_loss_rel_diff"].items():
        rows.append(("2 speed levers", f"{lever}: loss relative difference, one batch",
                     f"{diff:.1e}"))
    return rows


def decoding_section(p: dict, res: dict) -> Rows:
    """4: greedy and beam-5 generation, batched and one at a time."""
    dec = networks.decoding(*p["sizes"][0], p["repeats"])
    res["decoding"] = dec
    res["beam5_vs_greedy_cost"] = dec["beam5_vs_greedy_cost"]
    return [
        ("4 decoding", f"greedy, batch {networks.BATCH}", f"{dec['greedy_seq_per_s']:.0f} seq/s"),
        ("4 decoding", f"beam 5, batch {networks.BATCH}", f"{dec['beam5_seq_per_s']:.0f} seq/s"),
        ("4 decoding", "beam 5 / greedy time", f"{dec['beam5_vs_greedy_cost']:.2f} "
         f"({verdict('beam5_vs_greedy_cost', dec['beam5_vs_greedy_cost'])})"),
        ("4 decoding", "beam 5 / greedy time, batch 1",
         f"{dec['beam5_vs_greedy_cost_batch1']:.2f}"),
        ("4 decoding", "greedy: autograd recording / inference_mode",
         f"{dec['inference_mode_speedup']:.2f}x"),
    ]


def data_section(p: dict, res: dict) -> Rows:
    """5: the data module against the fastest model's appetite; length buckets' padding."""
    small = [r for r in res["throughput"] if r["hidden"] == p["sizes"][0][0]]
    fastest = max(small, key=lambda r: r["seq_per_s"])["variant"]
    data = loop.data_and_buckets(p["epoch_size"], p["repeats"], fastest)
    res["data"] = data
    res["data_headroom"] = data["headroom"]
    return [
        ("5 data", f"{data['task']}: data module batches/s", f"{data['data_batches_per_s']:.0f}"),
        ("5 data", f"training batches/s ({fastest}, fastest)",
         f"{data['fastest_batches_per_s']:.1f}"),
        ("5 data", "headroom (data / fastest model)",
         f"{data['headroom']:.0f}x ({verdict('data_headroom', data['headroom'])})"),
        ("5 data", "padding share: plain -> length buckets (their speed: section 2)",
         f"{data['padding_share_plain']:.1%} -> {data['padding_share_bucketed']:.1%}"),
    ]


def files_section(p: dict, res: dict) -> Rows:
    """6: the user's files: a generated TSV from ``make train`` to the first training step,
    cold and warm, characters and BPE; predictions per second, greedy and beam 5."""
    kinds = p["tokenizers"]
    load = res["files"] = user_files.load_times(p["pairs"], kinds)
    rate = res["predict"] = user_files.predict_rate(p["predictions"], p["repeats"])
    res["files_cold_s"] = max(load[t]["cold"]["seconds"] for t in kinds)
    res["files_warm_s"] = max(load[t]["warm"]["seconds"] for t in kinds)
    res["files_peak_rss_gb"] = max(load[t][w]["peak_rss_gb"] for t in kinds
                                   for w in ("cold", "warm"))
    rows = []
    for tok in kinds:
        for when, key in (("cold", "files_cold_s"), ("warm", "files_warm_s")):
            run = load[tok][when]
            rows.append(("6 your data", f"{load['pairs']:,} pairs ({load['file_mb']:.0f} MB "
                         f"TSV), {tok}, {when}: to the first step",
                         f"{run['seconds']:.1f} s, {run['peak_rss_gb']:.2f} GB "
                         f"({verdict(key, run['seconds'])})"))
    rows.append(("6 your data", "peak resident memory, any of those",
                 f"{res['files_peak_rss_gb']:.2f} GB "
                 f"({verdict('files_peak_rss_gb', res['files_peak_rss_gb'])})"))
    rows += [("6 your data", f"predict, {name}, attention h128, 30 steps",
              f"{rate[key]:.0f} predictions/s")
             for name, key in (("greedy", "beam1_per_s"), ("beam 5", "beam5_per_s"))]
    return rows


def sweep_section(sweep: list[str] | None, res: dict) -> Rows:
    """7: the default sweep with 1 and 2 jobs (only with ``--sweep``)."""
    if sweep is None:
        return [("7 sweep", "default grid, 1 vs 2 jobs", "not run (--sweep)")]
    sw = res["sweep"] = sweep_scaling(sweep)
    return [("7 sweep", "default grid, 1 job / 2 jobs wall time", f"{sw['speedup']:.2f}x "
             f"({sw['jobs1_s']:.0f} s / {sw['jobs2_s']:.0f} s)")]


def gpu_section(profile: str, p: dict, res: dict) -> Rows:
    """8: the GPU section (``bench/gpu.py``) where CUDA is available."""
    if not torch.cuda.is_available() or profile == "tiny":
        return [("8 GPU", "attention / seq2seq throughput, bf16, g2p epoch",
                 "n/a (no GPU)" if not torch.cuda.is_available() else "not in --tiny")]
    res["gpu"], rows = gpu.run(p["repeats"], with_g2p=profile == "full")
    return rows


def run(profile: str, sweep: list[str] | None) -> tuple[dict, Rows]:
    """Every section in turn: the results (``latest.json``) and the table's rows."""
    p = PROFILES[profile]
    res: dict = {"machine": machine(), "profile": profile, "time": datetime.now().isoformat()}
    rows = overhead_section(p, res) + throughput_section(p, res) + reference_section(p, res)
    rows += levers_section(p, res)
    rows += decoding_section(p, res) + data_section(p, res) + files_section(p, res)
    rows += sweep_section(sweep, res)
    return res, rows + gpu_section(profile, p, res)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--full", action="store_true", help="more sizes, full epochs")
    parser.add_argument("--tiny", action="store_true", help="seconds: for the smoke test")
    parser.add_argument("--sweep", nargs="*", metavar="OVERRIDE", default=None,
                        help="also time the default sweep with 1 and 2 jobs (+ overrides)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", help="folder for the JSON (default <output_dir>/bench)")
    parser.add_argument("--gpu-check", action="store_true",
                        help="only the gpu tests and the GPU section (make gpu-check)")
    args = parser.parse_args(argv)
    if args.gpu_check:
        sys.exit(gpu.check())
    torch.set_num_threads(args.threads)
    quiet()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    profile = "tiny" if args.tiny else "full" if args.full else "quick"
    start = time.perf_counter()
    res, rows = run(profile, args.sweep)
    res["seconds"] = time.perf_counter() - start
    res["table"] = table(rows, res["seconds"], res["machine"])
    print(res["table"])
    out = Path(args.out or Path(os.environ.get("SEQ2SEQ_OUTPUT_DIR", "outputs")) / "bench")
    out.mkdir(parents=True, exist_ok=True)
    blob = json.dumps(res, indent=2, default=str)
    (out / "latest.json").write_text(blob)
    (out / "latest.md").write_text(res["table"] + "\n")
    (out / f"{datetime.now():%Y-%m-%d_%H-%M-%S}.json").write_text(blob)
    print(f"wrote {out / 'latest.json'} and {out / 'latest.md'}")
    return res


if __name__ == "__main__":
    main()

"""Model-level benchmarks: training throughput, the plain reference, decoding."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from bench.reference import TutorialAttention
from bench.timing import compare
from pipeline.models import EncoderDecoder
from pipeline.models.search import greedy_search

VOCAB = 16
BATCH = 64
# The Keras library's families as switches (``conf/model/*.yaml``); attention with input feeding.
VARIANTS = {
    "simple": dict(bridge=False, feedback=False),
    "seq2seq": dict(bridge=True),
    "peek": dict(bridge=True, peek=True),
    "additive": dict(bidirectional=True, bridge=False, peek=True, attention="additive"),
    "dot": dict(bidirectional=True, bridge=False, peek=True, attention="dot"),
    "general": dict(bidirectional=True, bridge=False, peek=True, attention="general"),
}


def make_model(variant: str, cell: str, hidden: int, device="cpu", seed: int = 0,
               fast: bool = True):
    torch.manual_seed(seed)
    return EncoderDecoder(input_dim=VOCAB, output_dim=VOCAB, hidden_dim=hidden, cell=cell,
                          fast=fast, **VARIANTS[variant]).to(device)


def make_batch(length: int, batch: int = BATCH, device="cpu", seed: int = 1):
    """Random token sources with lengths in [length/2, length] (the first one full), targets
    of ``length`` steps."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(max(1, length // 2), length + 1, (batch,), generator=g)
    lengths[0] = length
    src = torch.randint(3, VOCAB, (batch, length), generator=g)
    src = src.masked_fill(torch.arange(length)[None] >= lengths[:, None], 0)
    tgt = torch.randint(3, VOCAB, (batch, length), generator=g)
    return src.to(device), lengths, tgt.to(device)


def train_step(model, forward, tgt):
    """A closure running one Adam step of ``forward()``'s logits against ``tgt``."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def run():
        logits = forward()
        loss = F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if tgt.is_cuda:
            torch.cuda.synchronize()
    return run


def throughput(sizes, cells, repeats: int, device="cpu") -> list[dict]:
    """Training sequences per second of every variant at every (hidden, length)."""
    rows = []
    for hidden, length in sizes:
        src, lengths, tgt = make_batch(length, device=device)
        for cell in cells:
            steps = {}
            for variant in VARIANTS:
                model = make_model(variant, cell, hidden, device).train()
                steps[variant] = train_step(model, lambda m=model, s=src, n=lengths, t=tgt: m(
                    s, n, target=t).outputs, tgt)
            times = compare(steps, repeats=repeats)
            rows += [dict(variant=v, cell=cell, hidden=hidden, length=length,
                          seq_per_s=BATCH / t, batches_per_s=1 / t) for v, t in times.items()]
    return rows


def against_reference(hidden: int, length: int, cell: str, repeats: int) -> dict:
    """The tutorial-style Bahdanau model against the project's, same weights and batch; the
    middle contender is the project's model on its plain path (``fast=False``: only the keys
    precomputed), so each step of the optimisation is measured on its own."""
    src, lengths, tgt = make_batch(length)
    project = make_model("additive", cell, hidden).train()
    reference = TutorialAttention(VOCAB, VOCAB, hidden, cell).copy_from(project).train()
    plain = make_model("additive", cell, hidden, fast=False).train()
    with torch.no_grad():
        same = torch.allclose(project(src, lengths, target=tgt).outputs,
                              reference(src, lengths, tgt), rtol=1e-4, atol=1e-5)

    times = compare({
        "reference": train_step(reference, lambda: reference(src, lengths, tgt), tgt),
        "keys_only": train_step(plain, lambda: plain(src, lengths, target=tgt).outputs, tgt),
        "project": train_step(project, lambda: project(src, lengths, target=tgt).outputs, tgt),
    }, repeats=repeats)
    return dict(cell=cell, hidden=hidden, length=length, same_outputs=same,
                speedup=times["reference"] / times["project"],
                keys_precomputed=times["reference"] / times["keys_only"],
                fast_steps=times["keys_only"] / times["project"],
                ms={k: 1000 * v for k, v in times.items()})


def decoding(hidden: int, length: int, repeats: int, device="cpu") -> dict:
    """Greedy and beam-5 generation, batched, of the attention model; and what
    ``inference_mode`` saves on greedy decoding against autograd recording."""
    src, lengths, _ = make_batch(length, device=device)
    model = make_model("additive", "lstm", hidden, device).eval()

    def recorded():
        with torch.enable_grad():
            greedy_search(model, *model.begin(src, lengths), length)

    times = compare({
        "greedy": lambda: model.generate(src, lengths, max_len=length),
        "beam5": lambda: model.generate(src, lengths, max_len=length, beam_size=5),
        "greedy_grad": recorded,
    }, repeats=repeats)
    one = compare({
        "greedy": lambda: model.generate(src[:1], lengths[:1], max_len=length),
        "beam5": lambda: model.generate(src[:1], lengths[:1], max_len=length, beam_size=5),
    }, repeats=repeats)
    return dict(hidden=hidden, length=length,
                beam5_vs_greedy_cost_batch1=one["beam5"] / one["greedy"],
                greedy_seq_per_s=BATCH / times["greedy"], beam5_seq_per_s=BATCH / times["beam5"],
                beam5_vs_greedy_cost=times["beam5"] / times["greedy"],
                inference_mode_speedup=times["greedy_grad"] / times["greedy"])


def compiled_attention(hidden: int, length: int, repeats: int) -> dict:
    """``torch.compile`` of the attention step of the project's model, against eager."""
    src, lengths, tgt = make_batch(length)
    model = make_model("additive", "lstm", hidden).train()
    attention = model.decoder.attention
    eager = attention.forward
    compiled = torch.compile(eager, dynamic=False)
    step = train_step(model, lambda: model(src, lengths, target=tgt).outputs, tgt)
    start = time.perf_counter()
    attention.forward = compiled
    step()
    compile_s = time.perf_counter() - start

    def use(fn):
        def run():
            attention.forward = fn
            step()
        return run

    times = compare({"eager": use(eager), "compiled": use(compiled)}, repeats=repeats)
    return dict(speedup=times["eager"] / times["compiled"], compile_s=compile_s)

"""The user's-files path at scale: a generated TSV of a million pairs from ``make train
ARGS="data=files ..."`` to its first training step (cold: nothing cached; warm: the data
cache built), with the peak resident memory of the whole process tree; and predictions per
second of :class:`pipeline.decode.Translator`, greedy and beam 5."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch
from lightning.pytorch.callbacks import Callback

from pipeline.data.tokenize import Chars, TextCodec
from pipeline.decode import Translator
from pipeline.models import EncoderDecoder

SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
MARKER_ENV = "SEQ2SEQ_BENCH_FIRST_STEP"


class FirstStep(Callback):
    """Writes the wall-clock time of the end of the first training step to the file named
    by ``$SEQ2SEQ_BENCH_FIRST_STEP`` (the bench then stops the process)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == 0:
            Path(os.environ[MARKER_ENV]).write_text(repr(time.time()))


def write_pairs(path: Path, count: int, seed: int = 0) -> Path:
    """``count`` pairs of about 20 characters a side: 2-4 pseudo-words, and the same words
    in reverse order, each spelled backwards (a file made here, never downloaded)."""
    rng = random.Random(seed)
    lines = ["source\ttarget"]
    for _ in range(count):
        words = ["".join(rng.choices(SYLLABLES, k=rng.randint(1, 3)))
                 for _ in range(rng.randint(2, 4))]
        lines.append(f"{' '.join(words)}\t{' '.join(w[::-1] for w in reversed(words))}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


def first_step(train: Path, small: Path, output_dir: Path, tokenizer: str,
               timeout: float = 600) -> dict:
    """Seconds from starting ``python -m pipeline.train data=files`` on ``train`` to the end
    of its first training step, and the peak RSS (GB) of its process tree until then."""
    marker = output_dir / f"first-step-{tokenizer}.txt"
    marker.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pipeline.train", "data=files", f"data.train={train}",
           f"data.val={small}", f"data.test={small}", f"data.tokenizer={tokenizer}",
           "+callbacks.first_step._target_=bench.user_files.FirstStep",
           "trainer.max_epochs=1"]
    env = {**os.environ, "SEQ2SEQ_OUTPUT_DIR": str(output_dir), MARKER_ENV: str(marker)}
    start = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    peak = 0
    try:
        while not marker.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(cmd)} ended before its first step: "
                                   f"{proc.stderr.read().decode()[-2000:]}")
            if time.time() - start > timeout:
                raise TimeoutError(f"no first step within {timeout:.0f} s")
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.05)
        return {"seconds": float(marker.read_text()) - start, "peak_rss_gb": peak / 1e9}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        proc.wait()


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and its children now (0 once it is gone)."""
    try:
        proc = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
    except psutil.Error:
        return 0


def load_times(pairs: int, tokenizers=("chars", "bpe"), folder: Path | None = None) -> dict:
    """Cold and warm first steps with each of ``tokenizers`` on ``pairs`` pairs."""
    folder = folder or Path(tempfile.mkdtemp(prefix="seq2seq-bench-files-"))
    train = write_pairs(folder / f"pairs-{pairs}.tsv", pairs)
    small = write_pairs(folder / "small.tsv", 200, seed=1)
    out = {"pairs": pairs, "file_mb": train.stat().st_size / 1e6}
    for tokenizer in tokenizers:
        runs = folder / f"out-{tokenizer}"
        out[tokenizer] = {"cold": first_step(train, small, runs, tokenizer),
                          "warm": first_step(train, small, runs, tokenizer)}
    return out


def predict_rate(count: int, repeats: int) -> dict:
    """Predictions per second of a Translator (the attention model, hidden 128, characters
    both sides, untrained so every output runs to the 30-step cap), greedy and beam 5."""
    rng = random.Random(0)
    texts = ["".join(rng.choices("abcdefghij", k=rng.randint(5, 20))) for _ in range(count)]
    tok = Chars()
    vocab = tok.fit(texts)
    torch.manual_seed(0)
    net = EncoderDecoder(kind="tokens", input_dim=len(vocab), output_dim=len(vocab),
                         hidden_dim=128, bidirectional=True, bridge=False, peek=True,
                         attention="additive")
    translator = Translator(net, TextCodec(tok, vocab), TextCodec(tok, vocab), max_len=30)
    out = {}
    for beam in (1, 5):
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            translator.translate(texts, beam_size=beam)
            best = min(best, time.perf_counter() - start)
        out[f"beam{beam}_per_s"] = count / best
    return out
